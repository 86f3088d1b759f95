"""The `mobile-compress` command line.

The CLI parses arguments, calls the library and prints results. It holds no logic
of its own, so everything it does is also available from Python. User mistakes
(``UserError``) are printed as one clear message with exit status 2, never a traceback.
The warnings and logs of the libraries used go to the run folder's log, not the terminal
(``mobile_compress.logs``), unless ``--verbose``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import models
from mobile_compress import __version__
from workflows.cli import (cmd_convert, cmd_demo, cmd_deploy, cmd_devices, cmd_distill, cmd_eval,
                                  cmd_examples, cmd_export_app, cmd_factorize, cmd_info, cmd_models, cmd_profile,
                                  cmd_prune, cmd_quantize, cmd_run, cmd_train, cmd_virtual_device)
from mobile_compress.errors import UserError
from mobile_compress.logs import LOG_NAME, CommandLog, command_log
from mobile_compress.report import printable

# In the order a user meets them: the zoo, training, compression, conversion, phones, recipes.
COMMANDS = (cmd_models, cmd_info, cmd_train, cmd_eval, cmd_distill, cmd_prune, cmd_factorize, cmd_quantize,
            cmd_convert, cmd_export_app, cmd_devices, cmd_virtual_device, cmd_profile, cmd_examples, cmd_run,
            cmd_deploy, cmd_demo)

VERBOSE_HELP = (f"show the warnings and logs of the libraries used (TensorFlow, onnx2tf, torch's exporter, ...) on "
                f"the terminal; without it they go to {LOG_NAME} in the run folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobile-compress",
        description="Compress PyTorch vision models, convert them to TFLite and profile them on Android phones.",
    )
    parser.add_argument("--version", action="version", version=f"mobile-compress {__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    _verbose_after_commands(parser)
    return parser


def _verbose_after_commands(parser: argparse.ArgumentParser) -> None:
    """--verbose also after the command's name (and a sub-command's), without overriding one given before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                child.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
                _verbose_after_commands(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    words = list(sys.argv[1:] if argv is None else argv)
    with command_log(words, folder=getattr(args, "out", None), verbose=args.verbose) as log:
        try:
            code = _run(args)
        except Exception:  # a bug: its traceback follows
            _print_log_path(log)
            raise
        if code != 0:
            _print_log_path(log)
        return code


def _print_log_path(log: CommandLog) -> None:
    """A failed command names its log, whose last lines may hold a library's own account of the failure."""
    if log.written:
        shown = "" if log.verbose else "; --verbose shows them here"
        print(f"  log: {printable(str(log.path))} (warnings and output of the libraries used{shown})",
              file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
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
