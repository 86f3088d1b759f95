"""Regenerate tests/fixtures/tiny.tflite: a few-kilobyte conv net the profiler tests run in milliseconds.

Run from the repository root: `.venv/bin/python tools/make_tiny_tflite.py`. The model is a
fixed-seed 8x8x3 -> conv -> pool -> dense(4) network, so its latency is tiny on any host and
on the virtual device's benchmark_model.
"""
from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiny.tflite"


def main() -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(4)(x)
    model = tf.keras.Model(inputs, outputs)
    OUT.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
