"""TFLite model metadata, written with MediaPipe's metadata writer building blocks and read back.

The flatbuffer is the one the TFLite Support and MediaPipe writers produce (the
``TFLM`` metadata buffer plus the associated files zipped onto the model): an image
input with RGB ImageProperties and NormalizationOptions, a classification output with
its TENSOR_AXIS_LABELS file, descriptions, and model name, version, author and license.
``metadata_info`` fills the value ranges from the tensor types as the writers do
(0-255 for uint8 tensors, the normalised pixel range for float inputs).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.app_bundle.config import LABELS_FILE
from converters.app_bundle.io_spec import Preprocessing


@dataclass
class ModelInfo:
    """The general section, and the descriptions of the two tensors."""

    name: str
    version: str
    description: str
    author: str | None
    license: str
    input_description: str
    output_description: str


def write_metadata(model: bytes, info: ModelInfo, prep: Preprocessing, labels_text: str,
                   output_is_logits: bool = True) -> bytes:
    """``model`` with metadata and ``labels.txt`` packed in; returns the new flatbuffer."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
    from mediapipe.tasks.python.metadata import metadata as mp_metadata
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, writer_utils

    input_type = writer_utils.get_input_tensor_types(model)[0]
    output_type = writer_utils.get_output_tensor_types(model)[0]
    image = metadata_info.InputImageTensorMd(
        name="image", description=info.input_description, norm_mean=list(prep.pixel_mean),
        norm_std=list(prep.pixel_std), color_space_type=schema.ColorSpaceType.RGB, tensor_type=input_type)
    scores = metadata_info.ClassificationTensorMd(
        name="scores", description=info.output_description,
        label_files=[metadata_info.LabelFileMd(LABELS_FILE)], tensor_type=output_type)
    general = metadata_info.GeneralMd(name=info.name, version=info.version, description=info.description,
                                      author=info.author, licenses=info.license)
    output_md = scores.create_metadata()
    if output_is_logits and output_md.stats is not None and output_md.stats.max == [1.0]:
        # The writer assumes float scores are probabilities in [0, 1]; ours are logits.
        output_md.stats = schema.StatsT()
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image.create_metadata()]
    subgraph.outputTensorMetadata = [output_md]
    model_md = general.create_metadata()
    model_md.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(model_md.Pack(builder), mp_metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    populator = mp_metadata.MetadataPopulator.with_model_buffer(bytearray(model))
    populator.load_metadata_buffer(builder.Output())
    populator.load_associated_file_buffers({LABELS_FILE: labels_text.encode("utf-8")})
    populator.populate()
    return bytes(populator.get_model_buffer())


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of ``path`` as JSON (MetadataDisplayer's view) plus the packed files' contents.

    Returns ``{"metadata": {...}, "files": {name: text}}``; raises ValueError when the
    model has no metadata.
    """
    from mediapipe.tasks.python.metadata import metadata as mp_metadata

    displayer = mp_metadata.MetadataDisplayer.with_model_file(str(path))
    files = {name: displayer.get_associated_file_buffer(name).decode("utf-8")
             for name in displayer.get_packed_associated_file_list()}
    return {"metadata": json.loads(displayer.get_metadata_json()), "files": files}
