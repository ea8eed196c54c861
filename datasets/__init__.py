"""Image decoding, dataset readers (MVTec layout, folder per class) and synthetic parts."""

from defectlens.datasets.images import (
    decode_image,
    map_to_original,
    read_image,
    read_mask,
    to_model_input,
)
from defectlens.datasets.layout import (
    Dataset,
    Sample,
    open_dataset,
    read_class_folders,
    read_mvtec,
)

__all__ = [
    "Dataset",
    "Sample",
    "decode_image",
    "map_to_original",
    "open_dataset",
    "read_class_folders",
    "read_image",
    "read_mask",
    "read_mvtec",
    "to_model_input",
]
