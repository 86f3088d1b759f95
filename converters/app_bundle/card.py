"""The model card: one dict (model_card.json) and its Markdown rendering (MODEL_CARD.md)."""
from __future__ import annotations

from typing import Any

from mobile_compress.counting import format_count

# Checkpoint metrics worth showing, in this order (the trainer's names).
_METRICS = ("best_val_top1", "val_top1", "val_top5", "val_n", "epoch")


def checkpoint_metrics(metrics: dict[str, Any], data: str | None) -> dict[str, Any]:
    out = {k: metrics[k] for k in _METRICS if k in metrics}
    if data:
        out["data"] = data
    return out


def render_markdown(card: dict[str, Any]) -> str:
    """MODEL_CARD.md: what an app developer needs on one page."""
    inp, out, model = card["input"], card["output"], card["model"]
    norm = inp["normalization"]
    lines = [f"# {card['name']} {card['version']}", "", card["description"], "",
             f"- author: {card['author'] or 'not given'}",
             f"- license: {card['license']}",
             f"- created: {card['created']} with mobile-compress {card['versions'].get('mobile-compress', '?')}", "",
             "## Files", "",
             "| file | what |", "|---|---|",
             f"| `{card['files']['model']}` | TFLite model with metadata (normalisation, labels, descriptions) "
             f"— {model['size_bytes'] / 1024:,.0f} KiB |",
             f"| `{card['files']['labels']}` | {len(card['labels'])} class names, line i = output i |",
             f"| `{card['files']['kotlin']}` | Android snippet that loads the model |", "",
             "## Model", "",
             "| | |", "|---|---|",
             f"| architecture | {model['arch']} {_options(model['options'])} |",
             f"| structural edits | {', '.join(model['transforms']) or 'none'} |",
             f"| TFLite flavour | {model['format']} |",
             f"| parameters | {format_count(model['params'])} |",
             f"| MACs | {format_count(model['macs'])} at {inp['shape'][1]}x{inp['shape'][2]} |",
             f"| size | {model['size_bytes']:,} bytes |", "",
             "## Input", "",
             "| | |", "|---|---|",
             f"| tensor | `{inp['name']}` {inp['dtype']} {_shape(inp['shape'])} ({inp['layout']}, {inp['color_space']}) |",
             f"| feed | {inp['feed']} |",
             f"| normalisation | `(pixel / 255 - mean) / std` with mean {_nums(norm['mean'])}, std {_nums(norm['std'])}; "
             f"in pixels mean {_nums(norm['pixel_mean'])}, std {_nums(norm['pixel_std'])} (metadata "
             f"NormalizationOptions: mean {_nums(norm['metadata_mean'])}, std {_nums(norm['metadata_std'])}) |",
             *([f"| folded | the training normalisation (mean {_nums(norm['training']['mean'])}, std "
                 f"{_nums(norm['training']['std'])}, per channel) is built into the model, so one mean/std fits "
                 "every channel |"] if norm.get("folded_into_model") else []),
             f"| quantization | {_quant(inp['quantization'])} |",
             f"| training preprocessing | {inp['training_preprocessing']} |", "",
             "## Output", "",
             "| | |", "|---|---|",
             f"| tensor | `{out['name']}` {out['dtype']} {_shape(out['shape'])} |",
             f"| values | {out['meaning']} |",
             f"| quantization | {_quant(out['quantization'])} |", "",
             "## Accuracy", ""]
    acc = card["accuracy"]
    rows = []
    ck = acc.get("checkpoint") or {}
    if "best_val_top1" in ck or "val_top1" in ck:
        top1 = ck.get("best_val_top1", ck.get("val_top1"))
        rows.append(f"| PyTorch checkpoint (training run) | {ck.get('data', '?')} validation"
                    f"{' (' + str(ck['val_n']) + ' images)' if 'val_n' in ck else ''} | {top1:.2f} % |")
    tfl = acc.get("tflite")
    if tfl:
        rows.append(f"| this .tflite (LiteRT) | {tfl['data']} {tfl['split']} ({tfl['samples']} images) | "
                    f"{100 * tfl['tflite_top1']:.2f} % |")
        rows.append(f"| PyTorch checkpoint, same images | {tfl['data']} {tfl['split']} ({tfl['samples']} images) | "
                    f"{100 * tfl['pytorch_top1']:.2f} % (top-1 agreement with the .tflite "
                    f"{100 * tfl['top1_agreement']:.1f} %) |")
    par = acc.get("parity")
    if par and par.get("figures"):
        fig = par["figures"]
        rows.append(f"| parity vs PyTorch ({par['format']}) | {fig['samples']} images | top-1 agreement "
                    f"{100 * fig['top1_agreement']:.1f} %, cosine min {fig['cosine_min']:.6f}, max abs diff "
                    f"{fig['max_abs_diff']:.3g} ({'passed' if par['passed'] else 'BELOW BAR'}) |")
    lines += (["| model | images | top-1 |", "|---|---|---|", *rows] if rows else ["not measured (pass --data)"])
    lines += ["", "## Latency", ""]
    lat = card["latency"].get("host_litert")
    if lat:
        lines.append(f"Host LiteRT interpreter, XNNPACK, {lat['num_threads']} thread, {lat['machine']}: median "
                     f"{lat['median_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ± {lat['std_ms']:.3f} ms over "
                     f"{lat['runs']} runs (first run {lat['first_ms']:.2f} ms). Phones differ; profile on the device.")
    else:
        lines.append("not measured")
    lines += ["", "## Clients", "",
              f"- MediaPipe Tasks ImageClassifier: {'yes' if card['clients']['mediapipe_image_classifier'] else 'no'}",
              "- TFLite Task Library ImageClassifier: yes",
              "- LiteRT / TFLite Interpreter: yes (apply the normalisation above yourself)"]
    if card["warnings"]:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in card["warnings"]]]
    return "\n".join(lines) + "\n"


def _options(options: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else ""


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _nums(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _quant(q: dict[str, float] | None) -> str:
    return "none (float)" if not q else f"scale {q['scale']:.6g}, zero point {q['zero_point']}"
