"""Recipes: one YAML file that chains the stages (train or distill -> prune -> factorize -> quantize ->
convert -> export-app -> profile), validated as a whole before any work, resumable after a crash,
with a stage table after every stage. This is the top layer: it may import every package.
"""
from __future__ import annotations

from mobile_compress.pipeline.recipe import Recipe, StageSpec, load_recipe
from mobile_compress.pipeline.runner import RunResult, run_recipe
from mobile_compress.pipeline.stages import REGISTRY

__all__ = ["REGISTRY", "Recipe", "RunResult", "StageSpec", "load_recipe", "run_recipe"]
