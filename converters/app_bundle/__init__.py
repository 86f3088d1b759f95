"""The app-integration bundle: a .tflite an Android app loads as is, with what it needs beside it.

``export_app(AppExportConfig(src, out_dir, ...)) -> AppBundle`` writes the model with
TFLite metadata (normalisation, RGB image input, labels, descriptions, name/version/
author/license), ``labels.txt``, a model card (Markdown and JSON) and a Kotlin snippet.
The metadata is built with MediaPipe's metadata writer building blocks, so MediaPipe
Tasks and the TFLite Task Library read it as they read their own.
"""
from converters.app_bundle.config import APP_FORMATS, AppExportConfig
from converters.app_bundle.export import AppBundle, export_app
from converters.app_bundle.metadata import read_metadata
from converters.app_bundle.card_metrics import eval_images
from converters.app_bundle.fold import renormalize
from converters.app_bundle.io_spec import read_io
from converters.app_bundle.sources import conversion_mismatch

__all__ = ["APP_FORMATS", "AppBundle", "AppExportConfig", "conversion_mismatch", "eval_images", "export_app", "read_io",
           "read_metadata", "renormalize"]
