"""The CIFAR-10 comparison as one BENCHMARKS.md section, rebuilt from the results files alone.

Nothing here measures: every figure is read from the JSON files the benchmark scripts wrote
(``results_layout``), and each issue's goal is judged from those figures. A goal whose
figures are missing is "not measured", never "met".
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import results_layout as layout

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"
QAT_NEAR_FP32 = ("mobilenet_v2", "shufflenet_v2_x1_0")  # issue 4 names these two for the 0.3-point goal
QAT_VS_PTQ = ("mobilenet_v2", "shufflenet_v2_x1_0", "mobilenet_v3_small")  # "every model, MobileNetV3-Small included"


@dataclass(frozen=True)
class Verdict:
    issue: int
    goal: str
    measured: str
    status: str


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _status(ok: bool | None) -> str:
    return NOT_MEASURED if ok is None else MET if ok else NOT_MET


# --- goals, one function per issue -------------------------------------------------------------

def converter_goals(convert: Any, stages: Any) -> list[Verdict]:
    rows = layout.convert_rows(convert)
    out = []
    import models

    timed = [(r["model"], r["ms"]["fp32"] / r["ms"]["int8"]) for r in rows
             if _num(r.get("ms", {}).get("fp32")) and _num(r.get("ms", {}).get("int8"))]
    untimed = [name for name in dict.fromkeys([*models.names(), *(r["model"] for r in rows)])
               if name not in dict(timed)]
    if not rows:
        out.append(Verdict(3, "int8 faster than fp32 on every zoo model (host LiteRT, XNNPACK, 1 thread)",
                           "no convert_zoo results", NOT_MEASURED))
    else:
        slow = [m for m, ratio in timed if ratio <= 1.0]
        worst = min(timed, key=lambda t: t[1]) if timed else None
        text = f"{len(timed) - len(slow)}/{len(timed) + len(untimed)} models faster in int8"
        text += f"; smallest speed-up {worst[1]:.2f}× ({worst[0]})" if worst else ""
        text += f"; not timed: {', '.join(untimed)}" if untimed else ""
        out.append(Verdict(3, "int8 faster than fp32 on every zoo model (host LiteRT, XNNPACK, 1 thread)", text,
                           NOT_MET if slow else NOT_MEASURED if untimed else MET))
    mnv2 = next((r for r in rows if r["model"] == "mobilenet_v2"), None)
    seconds = _num(mnv2.get("convert_s")) if mnv2 else None
    out.append(Verdict(3, "MobileNetV2 to ONNX and four TFLite flavours in at most 60 s",
                       f"{seconds:.0f} s (convert_zoo, {mnv2['input']}×{mnv2['input']})" if seconds else
                       "no MobileNetV2 row in convert_zoo", _status(None if seconds is None else seconds <= 60)))
    converted = [r for r in (stages or {}).get("rows", []) if r.get("parity_passed") is not None]
    failing = [r["label"] for r in converted if not r["parity_passed"]]
    out.append(Verdict(3, "every converted stage artifact passes the parity bars",
                       f"{len(converted) - len(failing)}/{len(converted)} pass" +
                       (f"; failing: {', '.join(failing)}" if failing else "") if converted else "no stage conversions",
                       _status(None if not converted else not failing)))
    return out


def quantization_goals(quantize: Any) -> list[Verdict]:
    rows = {r["model"]: r for r in layout.quantize_rows(quantize)}
    out = []
    for model in QAT_NEAR_FP32:
        r = rows.get(model, {})
        fp32, qat = _num(r.get("fp32_top1")), _num(r.get("qat_top1"))
        ok = None if fp32 is None or qat is None else fp32 - qat <= 0.3
        out.append(Verdict(4, f"{model}: QAT int8 .tflite within 0.3 points of fp32",
                           f"fp32 {fp32:.2f}, QAT {qat:.2f} ({qat - fp32:+.2f})" if ok is not None else
                           r.get("error", "no result")[:120], _status(ok)))
    for model in dict.fromkeys([*QAT_VS_PTQ, *rows]):
        r = rows.get(model, {})
        ptq, qat = _num(r.get("ptq_top1")), _num(r.get("qat_top1"))
        ok = None if ptq is None or qat is None else qat >= ptq
        out.append(Verdict(4, f"{model}: QAT int8 at least as good as PTQ int8",
                           f"QAT {qat:.2f}, PTQ {ptq:.2f}" if ok is not None else str(r.get("error", "no result"))[:120],
                           _status(ok)))
        if model not in rows:
            continue
        # the comparison on every test image when the run made it; the converter's parity set otherwise
        every = r.get("qat_vs_sim") or {}
        if every.get("agreement") is not None:
            agree, sim, images = _num(every["agreement"]) / 100, _num(every.get("fake_quant_top1")), every.get("images")
        else:
            agree, sim, images = _num(r.get("qat_agreement_with_sim")), _num(r.get("qat_sim_top1")), None
        ok = None if agree is None or sim is None or qat is None else agree >= 0.99 and abs(sim - qat) <= 0.2
        out.append(Verdict(4, f"{model}: QAT .tflite = its fake-quant model (≥ 99% top-1 agreement, ≤ 0.2 points)",
                           f"agreement {100 * agree:.2f}%" + (f" on {images} test images" if images else "") +
                           f", fake-quant {sim:.2f} vs .tflite {qat:.2f}" if ok is not None else "no result",
                           _status(ok)))
    return out


def pruning_goals(prune: Any) -> list[Verdict]:
    from prune_cifar10 import MODELS

    found = {r["model"]: r for r in prune or [] if r.get("method") == "ours"}
    out = []
    for model in dict.fromkeys([*MODELS, *found]):
        r = found.get(model, {"model": model, "error": "no result"})
        drop = _num(r.get("top1_drop"))
        out.append(Verdict(5, f"{r['model']}: pruned to 2× fewer MACs, within 1 point of the unpruned model",
                           f"Δ top-1 {-drop:+.2f}" if drop is not None else r.get("error", "no result"),
                           _status(None if drop is None else drop <= 1.0)))
        ratio = _num(r.get("latency_cut_per_mac_cut"))
        out.append(Verdict(5, f"{r['model']}: latency cut at least 70% of the MAC cut",
                           f"MAC cut {100 * r['mac_cut']:.0f}%, latency cut {100 * r['latency_cut']:.0f}% "
                           f"(ratio {ratio:.2f})" if ratio is not None else r.get("error", "not timed"),
                           _status(None if ratio is None else ratio >= 0.7)))
    return out


def distillation_goals(distill: Any) -> list[Verdict]:
    from distill_cifar10 import STUDENTS

    runs = layout.distill_runs(distill)
    out = []
    for student in dict.fromkeys([*STUDENTS, *(r["student"] for r in runs)]):
        mine = {r["variant"]: r["last_top1"] for r in runs if r["student"] == student}
        kd = {v: t for v, t in mine.items() if v != "none"}
        if "none" not in mine or not kd:
            out.append(Verdict(6, f"{student}: KD at least 1 point above no-KD",
                               "needs both a no-KD run and a KD run", NOT_MEASURED))
            continue
        best = max(kd, key=kd.get)
        gain = kd[best] - mine["none"]
        out.append(Verdict(6, f"{student}: KD at least 1 point above no-KD",
                           f"best {best} {kd[best]:.2f} vs no KD {mine['none']:.2f} ({gain:+.2f}); "
                           + ", ".join(f"{v} {t - mine['none']:+.2f}" for v, t in kd.items()),
                           _status(gain >= 1.0)))
    return out


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    return (converter_goals(results.get("convert"), results.get("stages"))
            + quantization_goals(results.get("quantize")) + pruning_goals(results.get("prune"))
            + distillation_goals(results.get("distill")))


# --- rendering ---------------------------------------------------------------------------------

def _f(value: Any, fmt: str = "{:.2f}") -> str:
    number = _num(value)
    return "" if number is None else fmt.format(number)


def _count(value: Any) -> str:
    from mobile_compress.counting import format_count

    return format_count(int(value)) if _num(value) is not None else ""


def stage_table(stages: Any) -> list[str]:
    rows = (stages or {}).get("rows", [])
    if not rows:
        return ["No stage measurements yet (step `stages`)."]
    lines = ["| stage | artifact | peer | top-1 % on the .tflite | test images | .tflite size | MACs | "
             "LiteRT ms | ONNX Runtime ms | ONNX Runtime top-1 % | parity |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['stage']} | {r['label']} | {r.get('peer') or ''} | fails: {r['error'][:100]} "
                         "||||||||")
            continue
        parity = "" if r.get("parity_passed") is None else "pass" if r["parity_passed"] else \
            "FAIL: " + "; ".join(r.get("parity_problems", []))[:80]
        size = f"{r['size_bytes'] / 1e6:.2f} MB" if _num(r.get("size_bytes")) else ""
        lines.append(f"| {r['stage']} | {r['label']} | {r.get('peer') or ''} | {_f(r.get('top1_tflite'))} | "
                     f"{r.get('test_images', '')} | {size} | {_count(r.get('macs'))} | {_f(r.get('tflite_ms'), '{:.3f}')} | "
                     f"{_f(r.get('onnx_ms'), '{:.3f}')} | {_f(r.get('top1_onnx'))} | {parity} |")
    return lines


def peer_table(results: dict[str, Any]) -> list[str]:
    """Each peer against our method, with the figures its own script measured in the same run."""
    lines = ["| peer | model | peer's figure | ours | measured by |", "|---|---|---|---|---|"]
    for r in layout.quantize_rows(results.get("quantize")):
        if "error" in r:
            continue
        lines.append(f"| PTQ baseline (int8 .tflite) | {r['model']} | {_f(r.get('ptq_top1'))} % | "
                     f"QAT int8 {_f(r.get('qat_top1'))} % | quantize_cifar10, {r.get('test_images')} test images |")
        torch_ptq = r.get("torch_ptq_top1")
        lines.append(f"| PyTorch quantization (torch.ao FX PTQ, scored in PyTorch) | {r['model']} | "
                     f"{_f(torch_ptq) + ' %' if _num(torch_ptq) is not None else str(torch_ptq)[:80]} | "
                     f"QAT int8 {_f(r.get('qat_top1'))} % | quantize_cifar10 |")
    prune = results.get("prune") or []
    for r in prune:
        if r.get("method") != "torch-pruning":
            continue
        ours = next((o for o in prune if o["model"] == r["model"] and o.get("method") == "ours"), {})
        peer = (f"fails: {r['error'][:80]}" if "error" in r else
                f"{_f(r.get('top1'))} %, latency cut {_f(100 * r['latency_cut'], '{:.0f}')}%"
                if _num(r.get("latency_cut")) is not None else f"{_f(r.get('top1'))} %")
        mine = (f"{_f(ours.get('top1'))} %, latency cut {_f(100 * ours['latency_cut'], '{:.0f}')}%"
                if _num(ours.get("latency_cut")) is not None else _f(ours.get("top1")))
        lines.append(f"| Torch-Pruning (2× fewer MACs, same fine-tune) | {r['model']} | {peer} | {mine} | prune_cifar10 |")
    runs = layout.distill_runs(results.get("distill"))
    for student in dict.fromkeys(r["student"] for r in runs):
        mine = {r["variant"]: r["last_top1"] for r in runs if r["student"] == student}
        kd = {v: t for v, t in mine.items() if v != "none"}
        if "none" in mine:
            best = max(kd, key=kd.get) if kd else None
            lines.append(f"| student without KD (same budget) | {student} | {mine['none']:.2f} % | "
                         + (f"{best} KD {kd[best]:.2f} %" if best else "") + " | distill_cifar10 (PyTorch top-1) |")
    for r in layout.convert_rows(results.get("convert")):
        ms = r.get("ms", {})
        if _num(ms.get("onnx")) is not None and _num(ms.get("fp32")) is not None:
            lines.append(f"| ONNX Runtime fp32 (1 thread) | {r['model']} ({r['input']}) | {ms['onnx']:.2f} ms | "
                         f"LiteRT fp32 {ms['fp32']:.2f} ms, int8 {_f(ms.get('int8'))} ms | convert_zoo |")
    return lines if len(lines) > 2 else ["No peer results yet."]


def _finished(path: Path) -> str:
    if not path.is_file():
        return ""
    return _dt.datetime.fromtimestamp(path.stat().st_mtime, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def step_table(root: Path, state: dict[str, Any], complete: dict[str, bool] | None = None) -> list[str]:
    """One row per step: what the runner recorded, else whether results exist (and are complete, when known)."""
    lines = ["| step | script | status | results written |", "|---|---|---|---|"]
    for step, (folder, _) in layout.RESULTS.items():
        record = state.get(step, {})
        present = layout.results_path(root, step).is_file()
        known = (complete or {}).get(step)
        status = record.get("status") or ("no results file" if not present else "results present" if known is None else
                                          "results complete" if known else "results incomplete")
        if record.get("error"):
            status += f": {record['error'][:100]}"
        lines.append(f"| {step} | `{folder}.py` | {status} | {_finished(layout.results_path(root, step))} |")
    return lines


def load_all(root: Path) -> dict[str, Any]:
    return {step: layout.load(root, step) for step in layout.RESULTS}


def environments(results: dict[str, Any]) -> list[str]:
    """The machine and versions each results file recorded (the scripts that record them)."""
    lines = []
    for step, data in results.items():
        env = data.get("environment") if isinstance(data, dict) else None
        if env:
            versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
            lines.append(f"- {step} ({env.get('date')}): {env.get('cpu')}, {env.get('cores')} cores, "
                         f"{env.get('memory_gib', 0):.0f} GiB, {env.get('accelerator')}; {env.get('os')}; "
                         f"Python {env.get('python')}; {versions}")
    return lines


def render(root: Path, state: dict[str, Any], command: str | None, environment_md: str,
           results: dict[str, Any] | None = None, judge: Callable[[dict], list[Verdict]] = verdicts,
           complete: dict[str, bool] | None = None) -> str:
    results = load_all(root) if results is None else results
    found = judge(results)
    counts = {s: sum(v.status == s for v in found) for s in (MET, NOT_MET, NOT_MEASURED)}
    lines = [
        "## The CIFAR-10 comparison in one command (`benchmarks/run_all.py`)",
        "",
        (f"Command: `{command}`." if command else "The results files were written by the scripts run on their own "
         "(their sections give their commands), not by `run_all.py`.")
        + " `run_all.py` chains the scripts below (each keeps its own section above with its settings "
        "and budget), then `stages_cifar10.py` measures every stage's artifact the same way in one run: top-1 of "
        "the .tflite in the LiteRT interpreter on the same test images, .tflite size, MACs, and host latency (the "
        "fastest of interleaved rounds, LiteRT 1 thread with XNNPACK, and ONNX Runtime 1 thread for the fp32 "
        ".onnx). The stages are separate comparisons that each start from the train_cifar10 checkpoints (pruning "
        "from its own when its section says so, with that start as a baseline row); they are not applied one "
        "after another. This section is rebuilt from the results files by "
        "`python benchmarks/run_all.py --summary-only`.",
        "",
        "Summary made on:",
        "",
        environment_md,
        "",
        "Machine and versions recorded by the results files:",
        "",
        *(environments(results) or ["- (none of the results files present records them)"]),
        "",
        "### Steps",
        "",
        *step_table(root, state, complete),
        "",
        "### Each stage: accuracy on the .tflite, size, MACs, host latency",
        "",
        *stage_table(results.get("stages")),
        "",
        "### Peers",
        "",
        *peer_table(results),
        "",
        f"### Goals ({counts[MET]} met, {counts[NOT_MET]} not met, {counts[NOT_MEASURED]} not measured)",
        "",
        "| issue | goal | measured | verdict |",
        "|---:|---|---|---|",
        *[f"| {v.issue} | {v.goal} | {v.measured} | {'**' + v.status + '**' if v.status == NOT_MET else v.status} |"
          for v in found],
    ]
    return "\n".join(lines)
