"""The pinned stack is what is installed, and its parts work together in one process."""
from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    found = {}
    for line in cfg["options"]["install_requires"].splitlines():
        line = line.split("#")[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if line:
            assert m, f"setup.cfg: '{line}' is not an exact pin (name==version)"
            found[m.group(1)] = m.group(3)
    return found


def test_every_dependency_is_pinned_and_installed() -> None:
    wanted = pins()
    assert {"torch", "tensorflow", "onnx2tf", "onnx", "onnxruntime", "numpy", "protobuf", "tflite-runtime", "adb-shell"} <= set(wanted)
    wrong = {}
    for name, version in wanted.items():
        installed = metadata.version(name).split("+")[0]
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from setup.cfg pins (pinned, installed): {wrong}"


def test_onnx2tf_pins_match_ours() -> None:
    """Our pins for onnx2tf's stack are exactly what the installed onnx2tf declares."""
    wanted = pins()
    declared = {}
    for req in metadata.requires("onnx2tf") or []:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", req.strip())
        if m:
            declared[m.group(1).replace("_", "-").lower()] = m.group(2)
    ours = {k.lower(): v for k, v in wanted.items()}
    differ = {k: (v, ours.get(k)) for k, v in declared.items() if ours.get(k) != v}
    assert declared and not differ, f"onnx2tf declares (its pin, ours): {differ}"


def test_nothing_depends_on_torchvision_or_timm() -> None:
    for dist in ("torchvision", "timm"):
        with pytest.raises(metadata.PackageNotFoundError):
            metadata.version(dist)


def test_torch_to_onnx_to_onnxruntime(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), path, dynamo=True, external_data=False)
    onnx.checker.check_model(onnx.load(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)


def test_tensorflow_tflite_and_both_interpreters_agree() -> None:
    import tensorflow as tf
    import tflite_runtime.interpreter as tflite_runtime
    from ai_edge_litert.interpreter import Interpreter as LiteRT

    tf.keras.utils.set_random_seed(0)
    keras_model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    expected = keras_model(x).numpy()
    for interpreter_class in (LiteRT, tflite_runtime.Interpreter):
        interpreter = interpreter_class(model_content=flatbuffer)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_onnx2tf_imports_and_adb_shell_makes_a_usable_key(tmp_path: Path) -> None:
    import onnx2tf
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    assert callable(onnx2tf.convert)
    key = tmp_path / "adbkey"
    keygen(str(key))
    public = (tmp_path / "adbkey.pub").read_text()
    assert public.split()[0] and key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    signer = PythonRSASigner.FromRSAKeyPath(str(key))
    assert len(signer.Sign(b"\x00" * 20)) == 256  # a 2048-bit RSA signature, as adbd expects
