"""A checkpoint in, a factorised and fine-tuned checkpoint out: the job behind `mobile-compress factorize`.

Files in ``out_dir``::

    factorized/          the model right after factorisation (no fine-tuning), loadable on its own
    factorization.json   the per-layer report and the accuracy before and after factorising
    best/, last/, history.jsonl, train_state.pt   the fine-tuning run (as `mobile-compress train` writes)
    report.json          everything above plus the fine-tuned accuracy

``resume`` continues an interrupted fine-tune from ``factorized/`` and ``train_state.pt``
without factorising again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from torch import nn

from mobile_compress.data import Normalization, open_dataset
from mobile_compress.errors import UserError
from mobile_compress.lowrank.config import FactorizeConfig
from mobile_compress.lowrank.factorize import LayerReport, factorize, format_layers
from mobile_compress.report import write_json
from mobile_compress.training import (CheckpointMeta, EvalResult, TrainConfig, Trainer, TrainResult, evaluate,
                                      load_checkpoint, save_checkpoint)

FACTORIZED_DIR = "factorized"
FACTORIZATION_FILE = "factorization.json"
REPORT_FILE = "report.json"


def default_finetune_config() -> TrainConfig:
    """A short, gentle fine-tune: the factorised layers start from the trained weights' best low-rank fit."""
    return TrainConfig(epochs=1, lr=0.01)


@dataclass
class FactorizeJob:
    """What to factorise, how, and how to fine-tune. ``config.input_size`` comes from the checkpoint.

    Without ``data`` nothing is evaluated or fine-tuned; without ``train`` (None) the
    factorised model is evaluated but not fine-tuned.
    """

    checkpoint: str
    out_dir: str
    config: FactorizeConfig
    data: str | None = None
    train: TrainConfig | None = None
    resume: bool = False
    cache_dir: str | None = None
    storage_size: int | None = None
    log: Callable[[str], None] = print


@dataclass
class FactorizeJobResult:
    """Where the models went and what they score (top-1 in percent, None where not measured)."""

    out_dir: Path
    factorized: Path
    report: dict[str, Any]
    layers: list[LayerReport] = field(default_factory=list)
    finetuned: Path | None = None
    train: TrainResult | None = None

    def table(self) -> str:
        """The per-layer table of the factorisation (also on a resumed run)."""
        r = self.report
        return format_layers(self.layers, r["params_before"], r["params_after"], r["macs_before"], r["macs_after"])

    @property
    def accuracy(self) -> dict[str, float | None]:
        """Test top-1 (percent) of the original, the factorised and the fine-tuned model."""
        return {stage: (ev or {}).get("top1") for stage, ev in self.report["evaluation"].items()}


def run_factorize_job(job: FactorizeJob) -> FactorizeJobResult:
    out, log = Path(job.out_dir), job.log
    if job.train is not None and job.data is None:
        raise UserError("fine-tuning needs data: --epochs was given without --data",
                        hint="pass --data (the training images), or --epochs 0 to only factorise")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file", hint="pass a directory for the factorised checkpoints")
    model, meta = load_checkpoint(job.checkpoint)
    train_data, val_data = _datasets(job, meta) if job.data is not None else (None, None)

    if job.resume:
        report, factorized, fmeta = _resume(out)
    else:
        report, factorized, fmeta = _factorize(job, model, meta, val_data, out, log)
    layers = [LayerReport.from_dict(d) for d in report["layers"]]
    result = FactorizeJobResult(out_dir=out, factorized=out / FACTORIZED_DIR, report=report, layers=layers)

    if job.train is not None:
        assert train_data is not None
        log(f"fine-tuning for {job.train.epochs} epoch(s) on {len(train_data)} images")
        trainer = Trainer(factorized, job.train, train_data, val_data, out_dir=out, meta=fmeta, log=log)
        result.train = trainer.fit(resume=job.resume)
        result.finetuned = out / "best"
        best = next((e for e in result.train.epochs if e.epoch == result.train.best_epoch), None)
        if best is not None:
            report["evaluation"]["finetuned"] = {"top1": best.val_top1, "top5": best.val_top5,
                                                 "loss": best.val_loss, "n": best.val_n}
        report["finetune"] = {"config": job.train.to_dict(), "checkpoint": str(result.finetuned),
                              "epochs": [e.to_dict() for e in result.train.epochs],
                              "stopped_early": result.train.stopped_early, "seconds": result.train.elapsed}
    write_json(out / REPORT_FILE, report)
    return result


def _factorize(job: FactorizeJob, model: nn.Module, meta: CheckpointMeta, val_data: Any, out: Path,
               log: Callable[[str], None]) -> tuple[dict[str, Any], nn.Module, CheckpointMeta]:
    size = meta.input_size if isinstance(meta.input_size, int) else (3, *meta.input_size)
    config = replace(job.config, input_size=size) if job.config.input_size is None else job.config
    log("factorising")
    result = factorize(model, config)  # first: a bad option fails before any long evaluation
    if not result.layers:
        raise UserError(f"no layer of {job.checkpoint} was factorised: " + _why_nothing(result.skipped),
                        hint="lower --energy, pass a smaller --multiple, or use --target macs=F")
    evaluation: dict[str, dict[str, Any] | None] = {"original": None, "factorized": None, "finetuned": None}
    if val_data is not None:
        log(f"evaluating the original on {len(val_data)} images")
        evaluation["original"] = _scores(evaluate(model, val_data))
        log(f"evaluating the factorised model on {len(val_data)} images")
        evaluation["factorized"] = _scores(evaluate(result.model, val_data))
    metrics = evaluation["factorized"]
    fmeta = replace(meta, transforms=[*meta.transforms, result.transform],
                    metrics={"val_top1": metrics["top1"], "val_loss": metrics["loss"]} if metrics else {},
                    extra={**meta.extra, "factorized_from": str(Path(job.checkpoint).resolve())})
    save_checkpoint(out / FACTORIZED_DIR, result.model, fmeta)
    report = {"checkpoint": str(job.checkpoint), **result.to_dict(), "evaluation": evaluation}
    write_json(out / FACTORIZATION_FILE, report)
    return report, result.model, fmeta


def _resume(out: Path) -> tuple[dict[str, Any], nn.Module, CheckpointMeta]:
    file = out / FACTORIZATION_FILE
    if not file.is_file() or not (out / FACTORIZED_DIR / "checkpoint.json").is_file():
        raise UserError(f"nothing to resume in {out}: {file.name} or {FACTORIZED_DIR}/ is missing",
                        hint="run the command without --resume to factorise first")
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {file}: {err}", hint="run the command again without --resume") from None
    model, meta = load_checkpoint(out / FACTORIZED_DIR)
    return report, model, meta


def _datasets(job: FactorizeJob, meta: CheckpointMeta) -> tuple[Any, Any]:
    """Training and test images, preprocessed as the checkpoint was trained."""
    norm = Normalization.from_dict(meta.normalization) if meta.normalization else None
    opened = dict(image_size=meta.input_size, normalization=norm, cache_dir=job.cache_dir,
                  storage_size=job.storage_size)
    val = open_dataset(job.data, split="test", train=False, **opened)
    if meta.labels and list(val.classes) != list(meta.labels):
        raise UserError(f"the classes of --data {job.data} ({len(val.classes)}: {', '.join(val.classes[:5])}...) "
                        f"differ from those {job.checkpoint} was trained on ({len(meta.labels)}: "
                        f"{', '.join(meta.labels[:5])}...)",
                        hint="pass the data the checkpoint was trained on (same class folders)")
    train = None
    if job.train is not None:
        train = open_dataset(job.data, split="train", train=True, seed=job.train.seed, **opened)
    return train, val


def _scores(result: EvalResult) -> dict[str, Any]:
    return {"top1": result.top1, "top5": result.top5, "loss": result.loss, "n": result.n}


def _why_nothing(skipped: list) -> str:
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    return "; ".join(f"{n} layer(s): {reason}" for reason, n in reasons.items())
