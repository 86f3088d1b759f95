"""`mobile-compress examples [NAME] [--to DIR]`: the recipes that ship with the package, listed, shown or copied out.

    mobile-compress examples                              # name, kind and description of each
    mobile-compress examples digits_full_chain            # print it
    mobile-compress examples digits_full_chain --to .     # copy it here to edit, then run the copy
    mobile-compress run digits_full_chain                 # or run (or deploy) it by name as it is
"""
from __future__ import annotations

import argparse
import shlex

from workflows.cli.common import print_json
from workflows.examples import Example, all_examples, copy_example, find_example
from mobile_compress.report import Column, format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("examples", help="list the example recipes that ship with the package, or copy one out",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="an example's name: print it (or copy it with --to)")
    p.add_argument("--to", metavar="DIR", help="copy the example into DIR (created if missing) as NAME.yaml")
    p.add_argument("--overwrite", action="store_true", help="with --to: replace a file of that name in DIR")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table or the file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    examples = all_examples()
    if args.name is None:
        return _list(examples, args.json)
    example = find_example(args.name, examples)
    if args.to is None:
        if args.json:
            print_json(example.to_dict() | {"text": example.text()})
        else:
            print(example.text(), end="")
        return 0
    target = copy_example(example, args.to, overwrite=args.overwrite)
    command = f"mobile-compress {example.kind.command} {shlex.quote(str(target))}"
    if args.json:
        print_json(example.to_dict() | {"file": str(target), "next": command})
        return 0
    print(f"copied the {example.kind.name} {example.name} to {target}")
    print(f"edit it, then: {command}")
    return 0


def _list(examples: list[Example], as_json: bool) -> int:
    if as_json:
        print_json([e.to_dict() for e in examples])
        return 0
    columns = [Column("name", "name"), Column("kind", "kind"), Column("description", "description")]
    print(format_table([e.to_dict() for e in examples], columns, title=f"{len(examples)} examples"))
    print("\nshow one: mobile-compress examples NAME; copy it out to edit: mobile-compress examples NAME --to DIR")
    for kind in dict.fromkeys(e.kind for e in examples):
        print(f"use a {kind.name} as it is: " + " or ".join(f"mobile-compress {c} NAME" for c in kind.commands))
    return 0
