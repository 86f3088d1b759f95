"""`mobile-compress models`: the zoo with parameters and MACs."""
from __future__ import annotations

import argparse
import json

import models
from mobile_compress.counting import format_count, model_stats
from mobile_compress.report import Column, format_table

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo with parameters and MACs")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier size used for the counts (default 1000)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def zoo_table(num_classes: int = 1000) -> list[dict]:
    """One row a model: counts at its default input, and at 32×32 with the small-input stem."""
    rows = []
    for name in models.names():
        spec = models.spec(name)
        stats = model_stats(models.create(name, num_classes=num_classes), spec.default_input_size)
        row = {
            "name": name,
            "family": spec.family,
            "role": "student" if spec.is_student else "teacher",
            "input_size": spec.default_input_size,
            "params": stats.params,
            "macs": stats.macs,
            "size_bytes": stats.size_bytes,
            "options": list(spec.options),
            "small_input_macs": None,
        }
        if "small_input" in spec.options:
            small = models.create(name, num_classes=num_classes, small_input=True)
            row["small_input_macs"] = model_stats(small, models.SMALL_INPUT_SIZE).macs
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    rows = zoo_table(args.num_classes)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = [
        Column("name", "model"),
        Column("family", "family"),
        Column("role", "role"),
        Column("input_size", "input", lambda s: f"{s}x{s}", ">"),
        Column("params", "params", format_count, ">"),
        Column("macs", "MACs", format_count, ">"),
        Column("small_input_macs", "MACs @32 small-input", format_count, ">"),
        Column("options", "options", lambda o: ", ".join(o)),
    ]
    print(format_table(rows, columns, title=f"{len(rows)} models ({args.num_classes} classes)"))
    return 0
