"""How much of the graph each delegate took, read from benchmark_model's log.

benchmark_model says it in up to three ways, and we keep all three: the "Explicitly
applied ... completely / partially ... w/ K delegate kernels" sentence, the VERBOSE
"Replacing N out of M node(s) with delegate (X)" line, and "Failed to apply X delegate".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from profiler.logline import strip_level

_COMPLETE = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be partially executed "
                      r"by the delegate w/ (\d+) delegate kernels")
_NOT_EXECUTED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_FAILED = re.compile(r"Failed to apply (\S+) delegate")
_CREATED = re.compile(r"Created TensorFlow Lite (?:(\S+) )?delegate for (\S+?)\.?$")
_REPLACING = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((.+?)\) node, yielding (\d+) partitions")
# Kernel names in the "Replacing" line, to the names the other sentences use.
KERNEL_NAMES = {"TfLiteXNNPackDelegate": "XNNPACK", "TfLiteGpuDelegateV2": "GPU", "TfLiteGpuDelegate": "GPU",
                "TfLiteNnapiDelegate": "NNAPI", "TfLiteHexagonDelegate": "HEXAGON"}
STATES = ("complete", "partial", "not executed", "failed", "applied")


@dataclass
class DelegateCoverage:
    """One delegate's share of the graph."""

    delegate: str  # XNNPACK, GPU, NNAPI, EXTERNAL, HEXAGON, ...
    state: str  # one of STATES; "applied": replaced nodes were logged but no verdict sentence
    kernels: int | None = None  # delegate partitions (K in "w/ K delegate kernels")
    nodes_replaced: int | None = None
    nodes_total: int | None = None

    def describe(self) -> str:
        if self.state == "partial":
            text = f"{self.delegate}: partial, {self.kernels} kernels"
        else:
            text = f"{self.delegate}: {self.state}"
        if self.nodes_total:
            text += f" ({self.nodes_replaced}/{self.nodes_total} nodes)"
        return text


def parse_coverage(lines: Iterable[str]) -> list[DelegateCoverage]:
    """Coverage of every delegate the log mentions, in the order they were applied."""
    found: dict[str, DelegateCoverage] = {}
    replaced: list[tuple[str, int, int, int]] = []
    for raw in lines:
        message = strip_level(raw)
        if match := _PARTIAL.search(message):
            _set(found, match.group(1), "partial", kernels=int(match.group(2)))
        elif match := _COMPLETE.search(message):
            _set(found, match.group(1), "complete", kernels=1)
        elif match := _NOT_EXECUTED.search(message):
            _set(found, match.group(1), "not executed", kernels=0)
        elif match := _FAILED.search(message):
            _set(found, match.group(1), "failed")
        elif match := _REPLACING.search(message):
            replaced.append((match.group(3), int(match.group(1)), int(match.group(2)), int(match.group(4))))
    for kernel, done, total, partitions in replaced:
        name = KERNEL_NAMES.get(kernel)
        if name is None:  # a vendor kernel ("Vx Delegate") belongs to the external delegate
            name = "EXTERNAL" if "EXTERNAL" in found else kernel
        entry = found.get(name)
        if entry is None:  # applied by default (XNNPACK) without a verdict sentence: judge from the counts
            state = "complete" if done == total and partitions == 1 else "partial"
            entry = found[name] = DelegateCoverage(name, state, kernels=partitions)
        entry.nodes_replaced, entry.nodes_total = done, total
    return list(found.values())


def _set(found: dict[str, DelegateCoverage], name: str, state: str, kernels: int | None = None) -> None:
    name = name.upper()
    entry = found.setdefault(name, DelegateCoverage(name, state))
    entry.state, entry.kernels = state, kernels
