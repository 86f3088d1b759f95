"""Recipes: one YAML file that chains the stages (train or distill -> prune -> factorize -> quantize ->
convert -> export-app -> profile), validated as a whole before any work, resumable after a crash,
with a stage table after every stage. This is the top layer: it may import every package.
"""
from __future__ import annotations

from workflows.recipes.recipe import Recipe, StageSpec, load_recipe
from workflows.recipes.runner import RunResult, run_recipe
from workflows.recipes.stages import REGISTRY

__all__ = ["REGISTRY", "Recipe", "RunResult", "StageSpec", "load_recipe", "run_recipe"]
