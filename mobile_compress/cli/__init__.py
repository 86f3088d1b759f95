"""The `mobile-compress` command line.

The CLI parses arguments, calls the library and prints results. It holds no logic
of its own, so everything it does is also available from Python. User mistakes
(``UserError``) are printed as one clear message with exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import models
from mobile_compress import __version__
from mobile_compress.cli import (cmd_convert, cmd_demo, cmd_deploy, cmd_devices, cmd_distill, cmd_eval,
                                  cmd_export_app, cmd_factorize, cmd_info, cmd_models, cmd_profile, cmd_prune,
                                  cmd_quantize, cmd_run, cmd_train, cmd_virtual_device)
from mobile_compress.errors import UserError
from mobile_compress.report.terminal import printable

# In the order a user meets them: the zoo, training, compression, conversion, phones, recipes.
COMMANDS = (cmd_models, cmd_info, cmd_train, cmd_eval, cmd_distill, cmd_prune, cmd_factorize, cmd_quantize,
            cmd_convert, cmd_export_app, cmd_devices, cmd_virtual_device, cmd_profile, cmd_run, cmd_deploy, cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobile-compress",
        description="Compress PyTorch vision models, convert them to TFLite and profile them on Android phones.",
    )
    parser.add_argument("--version", action="version", version=f"mobile-compress {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as err:
        _print_error(err.message, err.hint)
        return err.exit_code
    except (models.UnknownModelError, models.ModelOptionError) as err:
        _print_error(str(err), "run `mobile-compress models` to list the models and their options")
        return UserError.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _print_error(message: str, hint: str | None) -> None:
    """The one place errors reach the terminal: values from files and devices in them cannot drive it."""
    print(f"mobile-compress: error: {printable(message)}", file=sys.stderr)
    if hint:
        print(f"  hint: {printable(hint)}", file=sys.stderr)
