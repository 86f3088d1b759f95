"""Training throughput on this machine, fp32 against bf16 autocast, measured side by side.

    python benchmarks/train_throughput.py

For every CIFAR-size configuration in the zoo (32×32 input, small-input stem for the
ImageNet families), times SGD training steps on random batches, alternating fp32 and
bf16 rounds so both see the same machine state, and writes the medians to BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import update_section  # noqa: E402

import models  # noqa: E402
from mobile_compress.report import environment  # noqa: E402

CONFIGS = (
    ("resnet20", {}), ("resnet56", {}),
    ("mobilenet_v2", {"small_input": True}), ("mobilenet_v2", {"small_input": True, "width_mult": 0.5}),
    ("mobilenet_v3_small", {"small_input": True}), ("shufflenet_v2_x1_0", {"small_input": True}),
    ("squeezenet1_1", {"small_input": True}),
)


def steps_per_second(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                     bf16: bool, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def measure(name: str, options: dict, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = models.create(name, num_classes=10, **options).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    for bf16 in (False, True):  # warm-up: first-call allocations and kernel selection
        steps_per_second(model, opt, x, y, bf16, 1)
    rates = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for key in ("fp32", "bf16"):
            rates[key].append(batch * steps_per_second(model, opt, x, y, key == "bf16", steps))
    fp32, bf16 = statistics.median(rates["fp32"]), statistics.median(rates["bf16"])
    return {"model": name, "options": options, "fp32": fp32, "bf16": bf16, "speedup": bf16 / fp32}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, options in CONFIGS:
        rows.append(measure(name, options, args.batch_size, args.rounds, args.steps))
        r = rows[-1]
        print(f"{name} {options}: fp32 {r['fp32']:.0f} img/s, bf16 {r['bf16']:.0f} img/s ({r['speedup']:.2f}x)", flush=True)
    if args.no_write:
        return
    lines = [
        "## Training throughput, fp32 against bf16 (`benchmarks/train_throughput.py`)",
        "",
        f"Command: `python benchmarks/train_throughput.py --batch-size {args.batch_size} --rounds {args.rounds} "
        f"--steps {args.steps}`. SGD training steps on random 32×32 batches of {args.batch_size} (10 classes), "
        "fp32 and bf16 autocast rounds alternating in one run; medians of the rounds.",
        "",
        environment().markdown(),
        "",
        "| model | fp32 img/s | bf16 img/s | bf16 / fp32 |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        lines.append(f"| {r['model']}{f' ({opts})' if opts else ''} | {r['fp32']:.0f} | {r['bf16']:.0f} | {r['speedup']:.2f}× |")
    update_section("train_throughput", "\n".join(lines))
    print("BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
