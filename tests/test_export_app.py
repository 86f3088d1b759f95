"""`mobile-compress export-app`: the app bundle, read back by the clients Android apps use.

Fast tests wrap small .tflite models made with TensorFlow's converter (float, uint8 and
int8 I/O) around a saved checkpoint; the slow test trains a real model on the built-in
digits, converts it through onnx2tf and checks MediaPipe Tasks' ImageClassifier against
PyTorch and LiteRT on real images.
"""
from __future__ import annotations

import configparser
import json
import re
import shutil
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pytest

from converters.app_bundle import AppExportConfig, export_app, read_metadata
from workflows.cli import main
from mobile_compress.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = [str(i) for i in range(10)]
SIZE = 32


# ----------------------------------------------------------------------------- helpers


def _digits(normalization, count: int = 100, split: str = "test"):
    """``count`` real digit images: uint8 RGB (what an app has) and normalised NCHW (what training saw)."""
    from mobile_compress.data import open_dataset

    ds = open_dataset("builtin", split, SIZE, train=False, normalization=normalization)
    index = np.unique(np.linspace(0, len(ds) - 1, num=count).round().astype(int))
    raw = np.stack([ds.image(int(i)) for i in index])
    x = np.stack([np.asarray(ds[int(i)][0], np.float32) for i in index])
    labels = np.asarray([ds[int(i)][1] for i in index])
    return raw, x, labels


def mediapipe_top1(model: Path, raw: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Top-1 index and label of each image from MediaPipe Tasks' ImageClassifier (the Android C++ core)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=1)
    index, names = [], []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image in raw:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            top = result.classifications[0].categories[0]
            index.append(top.index)
            names.append(top.category_name)
    return np.asarray(index), names


def litert_top1(model: Path, x_nchw: np.ndarray) -> np.ndarray:
    from converters.parity import run_tflite

    return run_tflite(model, x_nchw, "nhwc").argmax(1)


def _save_checkpoint(directory: Path, normalization, labels=DIGITS, data: str | None = "builtin") -> Path:
    import torch

    import models
    from mobile_compress.training import CheckpointMeta
    from mobile_compress.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = models.create("mobilenet_v2", num_classes=10, width_mult=0.35, small_input=True)
    meta = CheckpointMeta(arch="mobilenet_v2", options={"width_mult": 0.35, "small_input": True}, num_classes=10,
                          input_size=SIZE, normalization=normalization.to_dict(), labels=list(labels),
                          metrics={"best_val_top1": 91.5, "val_top1": 91.5, "val_n": 359},
                          extra={"data": data} if data else {})
    return save_checkpoint(directory, model, meta)


def _keras_tflite(path: Path, normalization, io: str = "float") -> Path:
    """A small conv classifier (NHWC, 10 outputs) converted by TensorFlow; ``io``: float, uint8 or int8."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((SIZE, SIZE, 3)), tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu"), tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if io != "float":
        _, x, _ = _digits(normalization, 64, "train")
        calib = x.transpose(0, 2, 3, 1)

        def representative():
            for image in calib:
                yield [image[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def digits_norm():
    from mobile_compress.data.normalization import DIGITS as norm

    return norm


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, digits_norm) -> dict[str, Path]:
    from mobile_compress.data.normalization import IMAGENET

    root = tmp_path_factory.mktemp("models")
    return {
        "checkpoint": _save_checkpoint(root / "ckpt", digits_norm),
        "imagenet_checkpoint": _save_checkpoint(root / "ckpt_imagenet", IMAGENET),
        "unlabelled_checkpoint": _save_checkpoint(root / "ckpt_nolabels", digits_norm, labels=()),
        "dataless_checkpoint": _save_checkpoint(root / "ckpt_nodata", digits_norm, data=None),
        "float": _keras_tflite(root / "float.tflite", digits_norm),
        "uint8": _keras_tflite(root / "uint8.tflite", digits_norm, "uint8"),
        "uint8_misnormalised": _keras_tflite(root / "uint8_imagenet.tflite", IMAGENET, "uint8"),
        "int8": _keras_tflite(root / "int8.tflite", digits_norm, "int8"),
    }


def _export(models_dir, tmp_path, model="float", checkpoint="checkpoint", **kw):
    config = AppExportConfig(source=str(models_dir[model]), out_dir=str(tmp_path / "bundle"),
                             checkpoint=str(models_dir[checkpoint]), latency_runs=5, progress=False, **kw)
    return export_app(config)


@pytest.fixture(scope="module")
def float_bundle(models_dir, tmp_path_factory):
    return _export(models_dir, tmp_path_factory.mktemp("float"), name="digits-classifier", version="2.1.0",
                   author="Jane Doe", license="MIT", description="Reads handwritten digits.")


# ----------------------------------------------------------------------------- the stack


def test_mediapipe_writers_coexist_with_tensorflow_and_onnx2tf() -> None:
    """The pinned MediaPipe (0.10.x: its metadata writers work; needs numpy<2) loads beside TF 2.19 and onnx2tf."""
    import google.protobuf
    import onnx2tf
    import tensorflow as tf
    from mediapipe.tasks.python.metadata.metadata_writers import image_classifier, metadata_info
    from mediapipe.tasks.python.vision import ImageClassifier

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pins = dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)==(\S+)", cfg["options"]["install_requires"], re.M))
    for name in ("mediapipe", "opencv-contrib-python", "jax", "jaxlib", "matplotlib"):
        assert importlib_metadata.version(name) == pins[name], name
    assert pins["mediapipe"].startswith("0.10.")
    assert tf.__version__ == pins["tensorflow"] and np.__version__ == pins["numpy"]
    assert google.protobuf.__version__ == pins["protobuf"]
    assert callable(onnx2tf.convert) and image_classifier.MetadataWriter and metadata_info.InputImageTensorMd
    assert ImageClassifier.create_from_options
    from packaging.requirements import Requirement

    for dist in ("mediapipe", "jax", "jaxlib", "opencv-contrib-python", "matplotlib"):
        for text in importlib_metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                installed = importlib_metadata.version(req.name)
                assert req.specifier.contains(installed, prereleases=True), f"{dist} needs {req}, found {installed}"


# ----------------------------------------------------------------------------- metadata and files


def test_metadata_reads_back_with_normalisation_labels_and_names(float_bundle, digits_norm) -> None:
    found = read_metadata(float_bundle.files["model"])
    md = found["metadata"]
    assert (md["name"], md["version"], md["author"], md["license"]) == ("digits-classifier", "2.1.0", "Jane Doe", "MIT")
    assert md["description"] == "Reads handwritten digits."
    (inp,) = md["subgraph_metadata"][0]["input_tensor_metadata"]
    assert inp["content"]["content_properties_type"] == "ImageProperties"
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    (unit,) = inp["process_units"]
    assert unit["options_type"] == "NormalizationOptions"
    # 0-255 pixel units, one value (the digits statistics are the same on R, G and B)
    assert unit["options"]["mean"] == pytest.approx([digits_norm.mean[0] * 255], abs=1e-4)
    assert unit["options"]["std"] == pytest.approx([digits_norm.std[0] * 255], abs=1e-4)
    assert "32x32" in inp["description"]
    (out,) = md["subgraph_metadata"][0]["output_tensor_metadata"]
    assert out["description"].startswith("logits")
    (labels_file,) = out["associated_files"]
    assert labels_file["name"] == "labels.txt" and labels_file["type"] == "TENSOR_AXIS_LABELS"
    assert found["files"] == {"labels.txt": "".join(f"{d}\n" for d in DIGITS)}


def test_labels_file_card_and_kotlin(float_bundle, models_dir) -> None:
    out = float_bundle.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "MainActivity.kt", "labels.txt", "model.tflite",
                                                    "model_card.json"]
    assert (out / "labels.txt").read_text() == "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n"
    card = json.loads((out / "model_card.json").read_text())
    assert card == json.loads(json.dumps(float_bundle.card, default=str))
    assert card["model"]["size_bytes"] == (out / "model.tflite").stat().st_size
    assert card["model"]["params"] > 100_000 and card["model"]["macs"] > 1_000_000  # the checkpoint's counts
    assert card["input"]["shape"] == [1, SIZE, SIZE, 3] and card["input"]["layout"] == "NHWC"
    assert card["input"]["dtype"] == "float32" and card["input"]["quantization"] is None
    assert card["input"]["normalization"]["metadata_mean"] == pytest.approx([78.9225], abs=1e-3)
    assert card["output"]["shape"] == [1, 10] and card["labels"] == DIGITS
    assert card["accuracy"]["checkpoint"]["best_val_top1"] == 91.5 and card["accuracy"]["tflite"] is None
    lat = card["latency"]["host_litert"]
    assert lat["runs"] >= 5 and 0 < lat["median_ms"] < 1000 and lat["num_threads"] == 1
    assert card["clients"]["mediapipe_image_classifier"] is True and card["warnings"] == []
    md = (out / "MODEL_CARD.md").read_text()
    for text in ("# digits-classifier 2.1.0", "license: MIT", "| MACs |", "91.50 %", "median", "[78.9225]"):
        assert text in md, text
    kotlin = (out / "MainActivity.kt").read_text()
    assert 'setModelAssetPath("model.tflite")' in kotlin and "ImageClassifier.createFromOptions" in kotlin
    assert kotlin.count("{") == kotlin.count("}")


def test_bundle_files_are_replaced_whole_or_not_at_all(models_dir, tmp_path, monkeypatch) -> None:
    import converters.app_bundle.export as export

    out = _export(models_dir, tmp_path).out_dir
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(export, "kotlin_snippet", lambda card: "class Broken {" * 1000 + "\ud800")  # fails mid-write
    with pytest.raises(UnicodeEncodeError):
        _export(models_dir, tmp_path)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(files) == sorted(old)  # no temp file left behind
    assert files["MainActivity.kt"] == old["MainActivity.kt"]  # the previous snippet, not a truncated one


def test_mediapipe_reads_the_float_bundle_like_litert(float_bundle, digits_norm) -> None:
    raw, x, _ = _digits(digits_norm, 100)
    mp_index, mp_names = mediapipe_top1(float_bundle.files["model"], raw)
    lite = litert_top1(float_bundle.files["model"], x)
    assert np.mean(mp_index == lite) >= 0.99, (mp_index, lite)
    assert mp_names == [DIGITS[i] for i in mp_index]  # the labels come from the metadata


def test_uint8_model_gets_pixel_ranges_and_the_normalisation_its_quantization_implies(models_dir, tmp_path,
                                                                                      digits_norm) -> None:
    bundle = _export(models_dir, tmp_path, model="uint8")
    md = read_metadata(bundle.files["model"])["metadata"]["subgraph_metadata"][0]
    inp, out = md["input_tensor_metadata"][0], md["output_tensor_metadata"][0]
    assert inp["stats"] == {"max": [255.0], "min": [0.0]} and out["stats"] == {"max": [255.0], "min": [0.0]}
    q = bundle.card["input"]["quantization"]
    assert inp["process_units"][0]["options"]["mean"] == [q["zero_point"]]
    assert inp["process_units"][0]["options"]["std"] == pytest.approx([1 / q["scale"]], rel=1e-5)
    assert bundle.card["warnings"] == [] and bundle.card["input"]["feed"] == "uint8 raw pixels"
    raw, x, _ = _digits(digits_norm, 100)
    mp_index, _ = mediapipe_top1(bundle.files["model"], raw)
    assert np.mean(mp_index == litert_top1(bundle.files["model"], x)) >= 0.99


def test_uint8_model_calibrated_on_other_normalisation_is_flagged(models_dir, tmp_path) -> None:
    bundle = _export(models_dir, tmp_path, model="uint8_misnormalised")
    (warning,) = bundle.card["warnings"]
    assert "raw pixels" in warning and "--int8-io float" in warning
    assert "Warnings" in (bundle.out_dir / "MODEL_CARD.md").read_text()


def test_per_channel_normalisation_gets_three_values_and_the_interpreter_snippet(models_dir, tmp_path) -> None:
    from mobile_compress.data.normalization import IMAGENET

    bundle = _export(models_dir, tmp_path, checkpoint="imagenet_checkpoint")
    md = read_metadata(bundle.files["model"])["metadata"]
    options = md["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"][0]["options"]
    assert options["mean"] == pytest.approx([m * 255 for m in IMAGENET.mean], abs=1e-4)
    assert options["std"] == pytest.approx([s * 255 for s in IMAGENET.std], abs=1e-4)
    assert bundle.card["clients"]["mediapipe_image_classifier"] is False
    assert "Per-channel" in bundle.card["warnings"][0]
    kotlin = (bundle.out_dir / "MainActivity.kt").read_text()
    assert "org.tensorflow.lite.Interpreter" in kotlin and "123.675f" in kotlin and "ImageClassifier" not in kotlin


# ----------------------------------------------------------------------------- user mistakes


def test_int8_io_model_is_refused_with_the_fix(models_dir, tmp_path) -> None:
    with pytest.raises(UserError) as err:
        _export(models_dir, tmp_path, model="int8")
    assert str(models_dir["int8"]) in err.value.message and "int8" in err.value.message
    assert "--int8-io float" in err.value.hint
    assert not (tmp_path / "bundle").exists()


def test_missing_labels_names_the_checkpoint_file_and_the_fix(models_dir, tmp_path) -> None:
    with pytest.raises(UserError) as err:
        _export(models_dir, tmp_path, checkpoint="unlabelled_checkpoint")
    assert str(models_dir["unlabelled_checkpoint"] / "checkpoint.json") in err.value.message
    assert "--labels" in err.value.hint
    labels = tmp_path / "names.txt"
    labels.write_text("zero\none\n")
    with pytest.raises(UserError) as err:
        _export(models_dir, tmp_path, checkpoint="unlabelled_checkpoint", labels_file=str(labels))
    assert str(labels) in err.value.message and "2 class names" in err.value.message and "10" in err.value.hint
    labels.write_text("".join(f"digit {d}\n" for d in DIGITS))
    bundle = _export(models_dir, tmp_path, checkpoint="unlabelled_checkpoint", labels_file=str(labels))
    assert (bundle.out_dir / "labels.txt").read_text().splitlines()[3] == "digit 3"


def test_bad_sources_are_user_errors(models_dir, tmp_path, capsys) -> None:
    cases = {
        "missing": (tmp_path / "nope", None, "does not exist"),
        "no checkpoint": (models_dir["float"], None, "--checkpoint"),
        "not a checkpoint": (models_dir["float"], tmp_path, "not a checkpoint"),
        "plain file": (models_dir["checkpoint"] / "weights.pt", None, "not a checkpoint, a conversion output"),
        "empty dir": (tmp_path, None, "neither checkpoint.json"),
    }
    for case, (src, ckpt, text) in cases.items():
        argv = ["export-app", str(src), "--out", str(tmp_path / "out"), "--quiet"]
        argv += ["--checkpoint", str(ckpt)] if ckpt is not None else []
        assert main(argv) == 2, case
        err = capsys.readouterr().err
        assert "mobile-compress: error:" in err and text in err and "hint:" in err, (case, err)
        assert "Traceback" not in err
    report = tmp_path / "conv"
    report.mkdir()
    (report / "report.json").write_text(json.dumps({"source_kind": "checkpoint", "source": str(models_dir["checkpoint"]),
                                                    "artifacts": [{"format": "fp32", "path": "x/model_fp32.tflite"}]}))
    assert main(["export-app", str(report), "--out", str(tmp_path / "out"), "--format", "int8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has no int8 TFLite model" in err and "--format fp32" in err


def test_converting_a_checkpoint_without_data_asks_for_data(models_dir, tmp_path) -> None:
    with pytest.raises(UserError) as err:
        export_app(AppExportConfig(str(models_dir["dataless_checkpoint"]), str(tmp_path / "out"), progress=False))
    assert str(models_dir["dataless_checkpoint"] / "checkpoint.json") in err.value.message
    assert "--data" in err.value.hint and not (tmp_path / "out").exists()


def test_folding_builds_the_per_channel_normalisation_into_the_model() -> None:
    import torch

    from converters.app_bundle.fold import UNIT, NormalizedInput, needs_folding, renormalize
    from mobile_compress.data.normalization import DIGITS as digits, IMAGENET

    assert needs_folding(IMAGENET) and not needs_folding(digits)
    torch.manual_seed(0)
    inner = torch.nn.Conv2d(3, 2, 3).eval()
    pixels = torch.rand(2, 3, 8, 8)  # pixel / 255
    normalised = (pixels - torch.tensor(IMAGENET.mean).view(1, 3, 1, 1)) / torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    wrapped = NormalizedInput(inner, IMAGENET)
    torch.testing.assert_close(wrapped(pixels), inner(normalised))
    assert list(wrapped.state_dict()) == ["model.weight", "model.bias"]  # mean/std are graph constants
    np.testing.assert_allclose(renormalize(normalised.numpy(), IMAGENET, UNIT), pixels.numpy(), atol=1e-6)


def test_bad_options_are_user_errors(models_dir, tmp_path) -> None:
    for kw, text in (({"format": "uint4"}, "--format"), ({"version": "1 0"}, "--version"),
                     ({"author": " "}, "--author")):
        with pytest.raises(UserError, match=text):
            _export(models_dir, tmp_path, **kw)


def _conversion(folder: Path, models_dir, model: str = "float", fmt: str = "fp32",
                checkpoint: str = "checkpoint") -> Path:
    """A conversion output as `mobile-compress convert` writes it: model_FMT.tflite and report.json naming the source."""
    folder.mkdir(parents=True)
    path = shutil.copy(models_dir[model], folder / f"model_{fmt}.tflite")
    (folder / "report.json").write_text(json.dumps({
        "source_kind": "checkpoint", "source": str(models_dir[checkpoint]),
        "artifacts": [{"format": fmt, "path": str(path), "error": None, "parity": None, "problems": []}]}))
    return folder


def test_a_conversion_is_bundled_as_is_only_when_it_is_the_model_the_export_would_convert(models_dir,
                                                                                         tmp_path) -> None:
    from converters.app_bundle import conversion_mismatch

    checkpoint = models_dir["checkpoint"]
    fp32 = _conversion(tmp_path / "fp32", models_dir)
    assert conversion_mismatch(fp32, "fp32", checkpoint) is None
    assert "has no int8 TFLite model" in conversion_mismatch(fp32, "int8", checkpoint)
    assert "not from" in conversion_mismatch(fp32, "fp32", models_dir["unlabelled_checkpoint"])
    int8 = _conversion(tmp_path / "int8", models_dir, "int8", "int8")
    assert "int8_io: float" in conversion_mismatch(int8, "int8", checkpoint)  # MediaPipe needs float32 input

    smaller = shutil.copytree(checkpoint, tmp_path / "ckpt16")
    meta = json.loads((smaller / "checkpoint.json").read_text())
    (smaller / "checkpoint.json").write_text(json.dumps({**meta, "input_size": 16}))
    resized = _conversion(tmp_path / "resized", models_dir | {"checkpoint": smaller})
    assert "[1, 16, 16, 3]" in conversion_mismatch(resized, "fp32", smaller)

    per_channel = _conversion(tmp_path / "imagenet", models_dir, checkpoint="imagenet_checkpoint")
    assert "fold_normalization" in conversion_mismatch(per_channel, "fp32", models_dir["imagenet_checkpoint"])
    assert conversion_mismatch(per_channel, "fp32", models_dir["imagenet_checkpoint"], fold_normalization=False) is None


# ----------------------------------------------------------------------------- the real thing


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread) -> Path:
    """MobileNetV2 (width 0.35, small-input stem) trained 3 epochs on the built-in digits (~80 % top-1)."""
    from mobile_compress.training.job import TrainJob, run_train_job
    from mobile_compress.training import TrainConfig

    job = TrainJob(model="mobilenet_v2", data="builtin", out_dir=str(tmp_path_factory.mktemp("train") / "run"),
                   image_size=SIZE, options={"width_mult": 0.35, "small_input": True},
                   config=TrainConfig(epochs=3, batch_size=64, lr=0.05, progress=False))
    return Path(run_train_job(job).checkpoint)


def _per_channel_copy(checkpoint: Path, directory: Path) -> Path:
    """The trained checkpoint with a per-channel mean/std near the digits' one (MediaPipe cannot take it as is)."""
    shutil.copytree(checkpoint, directory)
    meta = json.loads((directory / "checkpoint.json").read_text())
    meta["normalization"] = {"mean": [0.30, 0.31, 0.32], "std": [0.34, 0.35, 0.36]}
    (directory / "checkpoint.json").write_text(json.dumps(meta))
    return directory


@pytest.mark.slow
@pytest.mark.timeout(2400)  # training and three onnx2tf conversions on a shared 2-core machine
@pytest.mark.parametrize("case", ["int8", "fp32", "fp32-per-channel"])
def test_mediapipe_image_classifier_agrees_with_our_evaluation(trained, tmp_path, case, capsys) -> None:
    """Acceptance: MediaPipe Tasks on the bundle gives the top-1 of LiteRT and PyTorch on 100 real images.

    int8 is exported straight from the checkpoint; fp32 from a `convert` output directory;
    fp32-per-channel from a checkpoint whose per-channel normalisation export-app folds into the model.
    """
    from converters.app_bundle.fold import UNIT, renormalize
    from converters.parity import run_torch
    from mobile_compress.data import Normalization
    from mobile_compress.training.checkpoint import load_checkpoint

    fmt = case.split("-")[0]
    out = tmp_path / "bundle"
    if case == "fp32":
        assert main(["convert", str(trained), "--out", str(tmp_path / "conv"), "--formats", "fp32", "--quiet",
                     "--calib", "builtin", "--calib-samples", "32", "--parity-samples", "50"]) == 0
        src = tmp_path / "conv"
    elif case == "fp32-per-channel":
        src = _per_channel_copy(trained, tmp_path / "per_channel")
    else:
        src = trained
    model, meta = load_checkpoint(trained if case == "fp32" else src)
    code = main(["export-app", str(src), "--out", str(out), "--format", fmt, "--data", "builtin",
                 "--name", "digits", "--version", "1.2.3", "--latency-runs", "20", "--quiet"])
    stdout = capsys.readouterr().out
    card = json.loads((out / "model_card.json").read_text())
    parity = card["accuracy"]["parity"]
    assert code == (0 if parity["passed"] else 1)
    assert "top-1 on 359 builtin test images" in stdout
    norm = Normalization.from_dict(meta.normalization)
    raw, x, labels = _digits(norm, 100)
    mp_index, mp_names = mediapipe_top1(out / "model.tflite", raw)
    folded = card["input"]["normalization"]["folded_into_model"]
    assert folded == (case == "fp32-per-channel") and card["clients"]["mediapipe_image_classifier"]
    lite = litert_top1(out / "model.tflite", renormalize(x, norm, UNIT) if folded else x)
    torch_top = run_torch(model, x).argmax(1)
    figures = {"mediapipe_vs_litert": float(np.mean(mp_index == lite)),
               "mediapipe_vs_pytorch": float(np.mean(mp_index == torch_top)),
               "mediapipe_top1": float(np.mean(mp_index == labels)), "litert_top1": float(np.mean(lite == labels)),
               "pytorch_top1": float(np.mean(torch_top == labels))}
    print(f"\n{case}: {figures}; parity {parity['passed']} {parity['figures']['top1_agreement']:.3f}; "
          f"tflite top-1 {card['accuracy']['tflite']['tflite_top1']:.4f}; "
          f"latency {card['latency']['host_litert']['median_ms']:.3f} ms; size {card['model']['size_bytes']}",
          file=sys.stderr)
    assert figures["mediapipe_vs_litert"] >= 0.99, figures
    assert mp_names == [meta.labels[i] for i in mp_index]
    if fmt == "fp32":
        assert figures["mediapipe_vs_pytorch"] >= 0.99, figures
        assert len(set(torch_top)) >= 5  # a real classifier, not one class for everything
    assert card["accuracy"]["tflite"]["samples"] == 359 and card["accuracy"]["tflite"]["tflite_top1"] > 0.5
    assert card["model"]["format"] == ("int8 (float32 input)" if fmt == "int8" else "fp32")
    assert read_metadata(out / "model.tflite")["metadata"]["version"] == "1.2.3"
