"""A MainActivity-style Kotlin snippet that loads the bundle on Android.

MediaPipe Tasks' ImageClassifier when it can read the metadata (it applies the
normalisation and labels itself); otherwise the LiteRT Interpreter with the
normalisation written out, since MediaPipe rejects per-channel mean/std.
"""
from __future__ import annotations

from typing import Any

MEDIAPIPE_ARTIFACT = "com.google.mediapipe:tasks-vision:0.10.14"
TFLITE_ARTIFACT = "org.tensorflow:tensorflow-lite:2.14.0"


def kotlin_snippet(card: dict[str, Any]) -> str:
    if card["clients"]["mediapipe_image_classifier"]:
        return _mediapipe(card)
    return _interpreter(card)


def _header(card: dict[str, Any], artifact: str) -> str:
    h, w = card["input"]["shape"][1:3]
    return (f"// {card['name']} {card['version']}: load {card['files']['model']} on Android.\n"
            f"// 1. Copy {card['files']['model']} to app/src/main/assets/.\n"
            f"// 2. app/build.gradle.kts: implementation(\"{artifact}\")\n"
            f"// The model was trained on centre crops ({card['input']['training_preprocessing']});\n"
            f"// crop the camera frame to a square before classifying (the model input is {h}x{w}).\n")


def _mediapipe(card: dict[str, Any]) -> str:
    return _header(card, MEDIAPIPE_ARTIFACT) + f"""\
// MediaPipe reads the normalisation and the labels from the model's metadata.
package com.example.classifier

import android.graphics.Bitmap
import android.os.Bundle
import android.util.Log
import androidx.appcompat.app.AppCompatActivity
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.core.RunningMode
import com.google.mediapipe.tasks.vision.imageclassifier.ImageClassifier

class MainActivity : AppCompatActivity() {{
    private lateinit var classifier: ImageClassifier

    override fun onCreate(savedInstanceState: Bundle?) {{
        super.onCreate(savedInstanceState)
        val options = ImageClassifier.ImageClassifierOptions.builder()
            .setBaseOptions(BaseOptions.builder().setModelAssetPath("{card['files']['model']}").build())
            .setRunningMode(RunningMode.IMAGE)
            .setMaxResults(3)
            .build()
        classifier = ImageClassifier.createFromOptions(this, options)
    }}

    /** Top classes of [bitmap] as (label, score); scores are the model's {card['output']['meaning_short']}. */
    fun classify(bitmap: Bitmap): List<Pair<String, Float>> {{
        val side = minOf(bitmap.width, bitmap.height)
        val square = Bitmap.createBitmap(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side)
        val result = classifier.classify(BitmapImageBuilder(square).build())
        val top = result.classificationResult().classifications()[0].categories()
        top.forEach {{ Log.i("{card['name']}", "${{it.categoryName()}}: ${{it.score()}}") }}
        return top.map {{ it.categoryName() to it.score() }}
    }}

    override fun onDestroy() {{
        classifier.close()
        super.onDestroy()
    }}
}}
"""


def _interpreter(card: dict[str, Any]) -> str:
    h, w = card["input"]["shape"][1:3]
    norm = card["input"]["normalization"]
    mean = ", ".join(f"{v:.6g}f" for v in norm["pixel_mean"])
    std = ", ".join(f"{v:.6g}f" for v in norm["pixel_std"])
    classes = card["model"]["num_classes"]
    return _header(card, TFLITE_ARTIFACT) + f"""\
// The LiteRT Interpreter: MediaPipe Tasks reject this model's per-channel normalisation,
// so the snippet normalises the pixels itself: (pixel - mean) / std, per RGB channel.
package com.example.classifier

import android.graphics.Bitmap
import android.os.Bundle
import androidx.appcompat.app.AppCompatActivity
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

class MainActivity : AppCompatActivity() {{
    private lateinit var interpreter: Interpreter
    private lateinit var labels: List<String>
    private val mean = floatArrayOf({mean})
    private val std = floatArrayOf({std})

    override fun onCreate(savedInstanceState: Bundle?) {{
        super.onCreate(savedInstanceState)
        val fd = assets.openFd("{card['files']['model']}")
        val model = FileInputStream(fd.fileDescriptor).channel
            .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(2))
        labels = assets.open("{card['files']['labels']}").bufferedReader().readLines()
    }}

    /** Index and label of the top class of [bitmap]. */
    fun classify(bitmap: Bitmap): Pair<Int, String> {{
        val side = minOf(bitmap.width, bitmap.height)
        val square = Bitmap.createBitmap(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side)
        val scaled = Bitmap.createScaledBitmap(square, {w}, {h}, true)
        val input = ByteBuffer.allocateDirect(4 * {h} * {w} * 3).order(ByteOrder.nativeOrder())
        val pixels = IntArray({h} * {w})
        scaled.getPixels(pixels, 0, {w}, 0, 0, {w}, {h})
        for (p in pixels) {{
            input.putFloat(((p shr 16 and 0xFF) - mean[0]) / std[0])
            input.putFloat(((p shr 8 and 0xFF) - mean[1]) / std[1])
            input.putFloat(((p and 0xFF) - mean[2]) / std[2])
        }}
        val scores = Array(1) {{ FloatArray({classes}) }}
        interpreter.run(input, scores)
        val best = scores[0].indices.maxByOrNull {{ scores[0][it] }} ?: 0
        return best to labels[best]
    }}

    override fun onDestroy() {{
        interpreter.close()
        super.onDestroy()
    }}
}}
"""
