"""`mobile-compress run recipe.yaml|EXAMPLE`: every stage of a recipe, resumable, with a stage table after each."""
from __future__ import annotations

import argparse
from pathlib import Path

from workflows.cli.common import add_overwrite_option
from workflows.recipes import REGISTRY, load_recipe, run_recipe


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a recipe: a YAML chain of stages (train/distill, compress, convert, ...)",
        description="Run the stages of RECIPE in order (kinds: " + ", ".join(REGISTRY) + "). The whole recipe is "
        "validated before any work starts. Each stage writes its artifact and metrics.json into RUN_DIR/NN_kind/; "
        "RUN_DIR/state.json lets --resume continue a killed run from the last finished stage (or epoch).",
    )
    p.add_argument("recipe", help="recipe .yaml file, or the name of an example recipe (`mobile-compress examples` "
                   "lists them); a file of that path wins")
    p.add_argument("--out", help="run directory (default: runs/<recipe name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_overwrite_option(p)
    p.add_argument("--check", action="store_true", help="validate the recipe and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    if args.check:
        print(f"{args.recipe}: valid, {len(recipe.stages)} stage(s): " + " -> ".join(s.kind for s in recipe.stages))
        return 0
    run_dir = Path(args.out) if args.out else Path("runs") / recipe.name
    result = run_recipe(recipe, run_dir, resume=args.resume, overwrite=args.overwrite)
    print(f"run finished: {result.run_dir} (stage table in {result.run_dir / 'stages.json'})")
    return 0
