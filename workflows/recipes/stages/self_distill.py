"""The ``distill:`` option of compression stages: distil the compressed model from its uncompressed self."""
from __future__ import annotations

from mobile_compress.distillation import DistillConfig, distillation_hook
from mobile_compress.distillation import DistillationHook
from workflows.recipes.fields import Fields


def parse_self_distill(f: Fields) -> DistillConfig | None:
    """``distill: {kd: [logit], temperature: 4, ...}`` -> DistillConfig; absent -> None."""
    if not f.has("distill"):
        f.raw("distill")
        return None
    values = f.mapping("distill")
    config = DistillConfig.from_dict(values, where=f.path("distill"))
    if config.cache_teacher:
        raise f.error("distill", values, "asks for cache_teacher, but compression stages train on augmented images",
                      hint="drop cache_teacher here")
    return config


def teacher_hook(checkpoint: str, config: DistillConfig) -> DistillationHook:
    """A fresh hook whose teacher is the stage's input checkpoint, loaded anew (never the model being compressed)."""
    return distillation_hook(checkpoint, config)
