"""Running a validated recipe stage by stage, with a state file that makes a killed run resumable.

RUN_DIR/state.json records each stage as pending, running or done (with its artifact,
metrics and table rows); it is rewritten atomically after every change. ``resume=True``
skips the finished stages (after checking that their options did not change) and restarts
the first unfinished one; a training stage continues from its last finished epoch
(its folder holds the Trainer's train_state.pt).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mobile_compress.errors import UserError
from mobile_compress.logs import log_to_run_folder
from workflows.recipes.stage_metrics import checkpoint_row, tflite_rows
from workflows.recipes.recipe import Recipe, StageSpec
from workflows.recipes.stages import CHECKPOINT, REGISTRY, TFLITE, RunContext, StageResult
from workflows.recipes.table import stage_table
from mobile_compress.report import write_json
from mobile_compress.run_folder import claim_out_dir

STATE_FILE = "state.json"
STATE_FORMAT = 1


@dataclass
class RunResult:
    run_dir: Path
    results: list[StageResult]
    rows: list[dict[str, Any]]
    skipped: list[int]  # stages already finished before this call (resume)


def run_recipe(recipe: Recipe, run_dir: str | Path, resume: bool = False,
               log: Callable[[str], None] = print, stop_after: int | None = None, overwrite: bool = False) -> RunResult:
    """Run every stage of ``recipe`` in ``run_dir``; ``stop_after`` ends the call after that stage (tests, dry steps).

    ``run_dir`` follows the run-folder rule (``claim_out_dir``): ``resume`` continues the run
    there, ``overwrite`` replaces it, and a folder holding anything else is refused.
    """
    run_dir = Path(run_dir)
    state = _start_state(recipe, run_dir, resume, overwrite)
    results: list[StageResult] = []
    rows: list[dict[str, Any]] = []
    skipped: list[int] = []
    for spec in recipe.stages:
        entry = state["stages"][spec.index]
        if entry["status"] == "done":
            results.append(StageResult.from_dict(entry["result"]))
            rows.extend(entry["rows"])
            skipped.append(spec.index)
            log(f"stage {spec.label}: finished in an earlier run, kept")
            continue
        was_running = entry["status"] == "running"
        entry["status"] = "running"
        _save(run_dir, state)
        stage_dir = run_dir / spec.label
        stage_dir.mkdir(parents=True, exist_ok=True)
        ctx = RunContext(run_dir=run_dir, stage_dir=stage_dir, input=None, data=_stage_data(spec, recipe),
                         cache_dir=recipe.cache_dir, resume=resume and was_running, results=results, log=log)
        ctx.input = ctx.resolve(spec.input)
        log(f"stage {spec.label}: {spec.kind}" + (f" of {ctx.input}" if ctx.input else "")
            + (" (resuming)" if ctx.resume else ""))
        result = REGISTRY[spec.kind].run(spec.options, ctx)
        stage_rows = _rows(spec, result, ctx.data, recipe)
        write_json(stage_dir / "metrics.json", {"stage": spec.label, "kind": spec.kind, **result.to_dict(),
                                                "table": stage_rows})
        entry.update(status="done", result=result.to_dict(), rows=stage_rows)
        _save(run_dir, state)
        results.append(result)
        rows.extend(stage_rows)
        log(stage_table(rows))
        if stop_after is not None and spec.index >= stop_after:
            break
    write_json(run_dir / "stages.json", rows)
    return RunResult(run_dir, results, rows, skipped)


def _stage_data(spec: StageSpec, recipe: Recipe) -> str | None:
    return getattr(spec.options, "data", None) or recipe.data


def _rows(spec: StageSpec, result: StageResult, data: str | None, recipe: Recipe) -> list[dict[str, Any]]:
    if result.produces == CHECKPOINT:
        rows = [checkpoint_row(result.artifact, data, recipe.cache_dir, recipe.latency)]
    elif result.produces == TFLITE:
        rows = tflite_rows(result.metrics, result.source_checkpoint, recipe.latency)
    elif "runs" in result.metrics:  # a profile: one row per model x delegate x device
        rows = [{"artifact": f"{r['model']} @ {r['device']} {r['delegate']}" + ("" if r["status"] == "ok"
                                                                                else f" ({r['status']})"),
                 "profiled_ms": r.get("median_ms")} for r in result.metrics["runs"]]
    else:
        rows = [{"artifact": Path(result.artifact).name}]
    return [{"stage": spec.label, **r} for r in rows]


def _start_state(recipe: Recipe, run_dir: Path, resume: bool, overwrite: bool) -> dict[str, Any]:
    file = run_dir / STATE_FILE
    fresh = {"format": STATE_FORMAT, "recipe": str(recipe.path.resolve()), "name": recipe.name,
             "stages": [{"index": s.index, "kind": s.kind, "label": s.label, "raw": s.raw, "status": "pending"}
                        for s in recipe.stages]}
    if not resume:
        if file.exists() and not overwrite:
            raise UserError(f"{run_dir} already holds a run ({file} exists)",
                            hint="continue it with --resume, replace it with --overwrite (deletes what is there), "
                                 "or choose another --out")
        # a recipe saved in its own run folder (the demo's) is no result: it neither blocks the run nor is deleted
        inputs = [recipe.data] + [s.input for s in recipe.stages if isinstance(s.input, str)]
        claim_out_dir(run_dir, overwrite=overwrite, keep=[recipe.path], inputs=inputs)
        run_dir.mkdir(parents=True, exist_ok=True)
        _save(run_dir, fresh)
        return fresh
    if not file.is_file():
        raise UserError(f"nothing to resume: {file} does not exist", hint="start the run without --resume")
    log_to_run_folder(run_dir)  # a resumed run's library log joins the run it continues
    try:
        old = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {file}: {err}", hint="start a new run in another --out") from None
    if old.get("format") != STATE_FORMAT:
        raise UserError(f"{file} was written by another version of mobile-compress", hint="start a new run")
    for entry in old["stages"]:
        i = entry["index"]
        if i >= len(recipe.stages):
            continue
        if entry["status"] == "done" and entry["raw"] != recipe.stages[i].raw:
            raise UserError(f"{recipe.path.name}: stages[{i}] changed since it finished in {run_dir}",
                            hint="resume with the recipe as it was, or start a new run in another --out")
        if entry["status"] in ("done", "running") and entry["raw"] == recipe.stages[i].raw:
            fresh["stages"][i] = entry
    for i, entry in enumerate(fresh["stages"]):  # a stage after a changed or pending one cannot be kept
        if entry["status"] != "done":
            for later in fresh["stages"][i + 1:]:
                if later["status"] == "done":
                    later.update(status="pending")
            break
    _save(run_dir, fresh)
    return fresh


def _save(run_dir: Path, state: dict[str, Any]) -> None:
    write_json(run_dir / STATE_FILE, state)
