"""Distillation as a Trainer hook, so it plugs into plain training, pruning fine-tune and QAT alike.

The hook runs the frozen teacher on each training batch (or reads its cached outputs), reads the
student's features from forward hooks on the named modules, and extends the loss chain:

    loss + alpha * (T^2 KL - CE)                 (logit KD: turns CE into (1-alpha) CE + alpha T^2 KL,
                                                  leaving terms other hooks added untouched)
         + hint_weight * sum MSE(adapter(s), t)  (hint; 1x1 conv adapters trained with the student)
         + at_weight / 2 * sum AT(s, t)          (attention transfer)
         + w_D * RKD-D + w_A * RKD-A             (relational KD on the penultimate embeddings)

Put it last in a Trainer's hook list: stages that rebuild modules (QAT, pruning) then run first,
and the feature taps are re-attached to replaced modules at every epoch start anyway.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mobile_compress.distillation import losses
from mobile_compress.distillation.cache import TeacherCache, check_cacheable, fingerprints
from mobile_compress.distillation.config import DistillConfig
from mobile_compress.distillation.layers import (
    INPUT, FeatureTap, Probe, check_layer, default_at_layers, default_hint_layers, probe,
)
from mobile_compress.distillation.teacher import freeze, load_teacher
from mobile_compress.errors import UserError
from mobile_compress.training import Hook

LOGITS = "logits"


class DistillationHook(Hook):
    """Distil ``teacher`` (frozen, eval mode) into the Trainer's model with the losses of ``config``.

    ``student``, when given, lets the layer names of ``config`` be checked now rather than when
    training starts; ``teacher_labels`` (a checkpoint's class names) are checked against the
    training data's classes. ``terms`` holds the last batch's loss terms (detached) for logging.
    """

    def __init__(self, teacher: nn.Module, config: DistillConfig | None = None,
                 student: nn.Module | None = None, teacher_labels: list[str] | None = None) -> None:
        self.teacher = freeze(teacher)
        self.teacher_labels = list(teacher_labels or [])
        self.config = config or DistillConfig()
        self.adapters = nn.ModuleDict()
        self.hint_layers: list[tuple[str, str]] = []
        self.at_layers: list[tuple[str, str]] = []
        self.rkd_keys: tuple[str, str] | None = None
        self.cache = TeacherCache() if self.config.cache_teacher else None
        self.terms: dict[str, float] = {}
        self._student_tap, self._teacher_tap = FeatureTap(), FeatureTap()
        if student is not None:
            self._check_named_layers(student)

    # ------------------------------------------------------------------ set-up

    def _check_named_layers(self, student: nn.Module) -> None:
        cfg = self.config
        for field, pairs in (("hint_layers", cfg.hint_layers), ("at_layers", cfg.at_layers),
                             ("rkd_layers", [cfg.rkd_layers] if cfg.rkd_layers else None)):
            for s, t in pairs or []:
                check_layer(student, s, "student", field, cfg.where)
                check_layer(self.teacher, t, "teacher", field, cfg.where)

    def setup(self, student: nn.Module, sample: torch.Tensor) -> None:
        """Choose the layers, build the adapters and attach the feature taps (``sample``: one input, C x H x W).

        Called by ``on_fit_start``; public so the hook can be used outside a Trainer.
        """
        cfg = self.config
        self._check_named_layers(student)
        x = sample.detach().unsqueeze(0).float().cpu()
        s_probe = probe(copy.deepcopy(student).cpu(), x)
        t_probe = probe(copy.deepcopy(self.teacher).cpu(), self._teacher_input(x))
        if "logit" in cfg.kd and s_probe.output_shape[1:] != t_probe.output_shape[1:]:
            raise UserError(f"{cfg.where}: the teacher gives {t_probe.output_shape[1]} outputs per image, the student "
                            f"{s_probe.output_shape[1]}; logit KD needs the same classes in the same order",
                            hint="use a teacher trained on the same classes, or drop 'logit' from kd")
        if "hint" in cfg.kd:
            self.hint_layers = cfg.hint_layers or _defaults(default_hint_layers, s_probe, t_probe, "hint_layers", cfg)
            self._build_adapters(s_probe, t_probe)
        if "at" in cfg.kd:
            self.at_layers = cfg.at_layers or _defaults(default_at_layers, s_probe, t_probe, "at_layers", cfg)
            for s, t in self.at_layers:
                _need_map(s_probe, s, "student", "at_layers", cfg.where)
                _need_map(t_probe, t, "teacher", "at_layers", cfg.where)
        if "rkd" in cfg.kd:
            if cfg.rkd_layers:
                self.rkd_keys = cfg.rkd_layers
            elif s_probe.classifier and t_probe.classifier:
                self.rkd_keys = (INPUT + s_probe.classifier, INPUT + t_probe.classifier)
            else:
                raise UserError(f"{cfg.where}: no Linear or Conv2d layer found to take the RKD embedding from",
                                hint="name the embedding modules with rkd_layers: 'student_module:teacher_module'")
        self._teacher_tap.attach(self.teacher, self._teacher_keys())
        self._student_tap.attach(student, self._student_keys())

    def _build_adapters(self, s_probe: Probe, t_probe: Probe) -> None:
        cfg = self.config
        for i, (s, t) in enumerate(self.hint_layers):
            cs = _need_map(s_probe, s, "student", "hint_layers", cfg.where)
            ct = _need_map(t_probe, t, "teacher", "hint_layers", cfg.where)
            key = f"hint{i}"
            existing = self.adapters[key] if key in self.adapters else None
            if existing is None or (existing.in_channels, existing.out_channels) != (cs, ct):
                self.adapters[key] = nn.Conv2d(cs, ct, kernel_size=1, bias=True)

    def _student_keys(self) -> list[str]:
        keys = [s for s, _ in self.hint_layers] + [s for s, _ in self.at_layers]
        return list(dict.fromkeys(keys + ([self.rkd_keys[0]] if self.rkd_keys else [])))

    def _teacher_keys(self) -> list[str]:
        keys = [t for _, t in self.hint_layers] + [t for _, t in self.at_layers]
        return list(dict.fromkeys(keys + ([self.rkd_keys[1]] if self.rkd_keys else [])))

    # ------------------------------------------------------------------ Hook interface

    def on_fit_start(self, trainer) -> None:
        if self.cache is not None:
            check_cacheable(trainer.train_data, self.config.where)
        classes = [str(c) for c in getattr(trainer.train_data, "classes", None) or []]
        if "logit" in self.config.kd and self.teacher_labels and classes and classes != self.teacher_labels:
            raise UserError(f"{self.config.where}: the teacher was trained on classes {self.teacher_labels[:5]}..., "
                            f"the training data has {classes[:5]}...; logit KD needs the same classes in the same "
                            "order", hint="distil on the data the teacher was trained on (same class folders)")
        sample = trainer.train_data[0][0]
        if not isinstance(sample, torch.Tensor):
            raise TypeError("distillation needs training samples that are tensors (an ImageDataset with a transform)")
        self.setup(trainer.model, sample)
        self.teacher.to(trainer.device).eval()
        self.adapters.to(trainer.device)

    def extra_parameters(self) -> Iterable[nn.Parameter]:
        return self.adapters.parameters()

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.teacher.eval()  # it is no submodule of the student, but a caller may have touched it
        self._student_tap.attach(trainer.model, self._student_keys())

    def loss(self, trainer, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor,
             loss: torch.Tensor) -> torch.Tensor:
        return self.distillation_loss(inputs, targets, outputs, loss, trainer.criterion)

    def state_dict(self) -> dict[str, Any]:
        return {"adapters": {k: v.detach().cpu() for k, v in self.adapters.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adapters.load_state_dict(state.get("adapters", {}))

    # ------------------------------------------------------------------ the loss

    def distillation_loss(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor,
                          loss: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
        """``loss`` extended with the configured terms; the student features come from the last forward."""
        cfg = self.config
        if self.teacher.training:
            self.teacher.eval()
        teacher = self._teacher_outputs(inputs)
        total, terms = loss, {}
        if "logit" in cfg.kd:
            kd = losses.logit_kd(outputs, teacher[LOGITS], cfg.temperature)
            total = total + cfg.alpha * (kd - criterion(outputs, targets))
            terms["logit"] = kd
        if "hint" in cfg.kd:
            hint = sum(losses.hint_loss(self.adapters[f"hint{i}"](self._student_tap.take(s)), teacher[t])
                       for i, (s, t) in enumerate(self.hint_layers))
            total = total + cfg.hint_weight * hint
            terms["hint"] = hint
        if "at" in cfg.kd:
            at = sum(losses.attention_transfer(self._student_tap.take(s), teacher[t]) for s, t in self.at_layers)
            total = total + cfg.at_weight / 2 * at
            terms["at"] = at
        if "rkd" in cfg.kd:
            s, t = self.rkd_keys  # type: ignore[misc]
            d = losses.rkd_distance(self._student_tap.take(s), teacher[t])
            a = losses.rkd_angle(self._student_tap.take(s), teacher[t])
            total = total + cfg.rkd_distance_weight * d + cfg.rkd_angle_weight * a
            terms["rkd_distance"], terms["rkd_angle"] = d, a
        self.terms = {k: float(v.detach()) for k, v in terms.items()}
        self._student_tap.clear()
        return total

    def _teacher_input(self, inputs: torch.Tensor) -> torch.Tensor:
        size = self.config.teacher_input_size
        if size is None or tuple(inputs.shape[-2:]) == (size, size):
            return inputs
        return F.interpolate(inputs, size=(size, size), mode="bilinear", align_corners=False)

    def _teacher_outputs(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        keys = fingerprints(inputs) if self.cache is not None else None
        if self.cache is not None:
            found = self.cache.lookup(keys)
            if all(f is not None for f in found):
                return {name: torch.stack([f[name] for f in found]).to(inputs.device) for name in found[0]}
        with torch.no_grad():
            self._teacher_tap.clear()
            out = {LOGITS: self.teacher(self._teacher_input(inputs))}
            out.update({k: self._teacher_tap.take(k) for k in self._teacher_keys()})
            self._teacher_tap.clear()
        if self.cache is not None:
            self.cache.store(keys, {k: _pooled(v) for k, v in out.items()})
        return out


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """What RKD reads of an embedding: a map pooled over space (cached entries stay small)."""
    return x.mean(dim=(2, 3)) if x.ndim == 4 else x


def _need_map(p: Probe, name: str, role: str, field: str, where: str) -> int:
    shape = p.shapes.get(name)
    if shape is None or len(shape) != 4:
        raise UserError(f"{where}: {field}: the {role} module {name!r} "
                        + ("was not called in a forward pass" if shape is None else f"outputs shape {shape}, "
                           "not a feature map (N, C, H, W)"),
                        hint="name a convolutional stage, e.g. one listed by the defaults")
    return shape[1]


def _defaults(choose, s_probe: Probe, t_probe: Probe, field: str, cfg: DistillConfig) -> list[tuple[str, str]]:
    pairs = choose(s_probe, t_probe)
    if not pairs:
        raise UserError(f"{cfg.where}: no feature stages found to pair for {field}",
                        hint=f"name them: {field}: ['student_module:teacher_module']")
    return pairs


def distillation_hook(teacher: nn.Module | str | os.PathLike, config: DistillConfig | None = None,
                      student: nn.Module | None = None) -> DistillationHook:
    """The hook other stages pass to their Trainer: ``teacher`` is a module or a checkpoint directory.

    Self-distillation of a compressed model: pass a copy of the uncompressed model as the teacher.
    """
    model, meta = load_teacher(teacher)
    return DistillationHook(model, config, student, teacher_labels=meta.labels if meta else None)
