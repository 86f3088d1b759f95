"""What the user sees while training: a per-batch bar on a terminal, one summary line per epoch."""
from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm

from mobile_compress.training.results import EpochStats


class StepBar:
    """tqdm bar over one epoch's batches with running loss, accuracy, lr and images/s (all ranks);
    shown on rank 0 only, with ``progress`` on and stderr a terminal."""

    def __init__(self, total: int, epoch: int, epochs: int, progress: bool, is_main: bool, world_size: int) -> None:
        self.show = progress and is_main and sys.stderr.isatty()
        self.total, self.world_size = total, world_size
        self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                        dynamic_ncols=True, disable=not self.show)
        self.t0 = time.monotonic()

    def update(self, step: int, sums: torch.Tensor, lr: float) -> None:
        """After batch ``step``; ``sums`` holds (loss * n, correct, n) so far on this rank."""
        if not self.show:
            return
        self.bar.update(1)
        if step % 10 == 0 or step == self.total - 1:
            s = sums.tolist()
            seconds = time.monotonic() - self.t0
            self.bar.set_postfix(loss=f"{s[0] / s[2]:.4f}", acc=f"{100 * s[1] / s[2]:.1f}%", lr=f"{lr:.3g}",
                                 img_s=f"{s[2] * self.world_size / max(seconds, 1e-9):.0f}")

    def close(self) -> None:
        self.bar.close()


def summary_line(s: EpochStats, epochs: int, best_epoch: int | None) -> str:
    """``epoch 3/10  loss 0.4100  train 86.20%  val 84.10% (top-5 99.20%) *best*  lr 0.05  12.3s  5120 img/s``."""
    parts = [f"epoch {s.epoch + 1}/{epochs}", f"loss {s.train_loss:.4f}", f"train {s.train_top1:.2f}%"]
    if s.val_top1 is not None:
        parts.append(f"val {s.val_top1:.2f}%" + (f" (top-5 {s.val_top5:.2f}%)" if s.val_top5 is not None else ""))
        if best_epoch == s.epoch:
            parts[-1] += " *best*"
    parts += [f"lr {s.lr:.3g}", f"{s.seconds:.1f}s", f"{s.images_per_sec:.0f} img/s"]
    return "  ".join(parts)
