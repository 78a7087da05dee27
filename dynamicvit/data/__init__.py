"""Data sets: Fashion-MNIST from its idx files, Cluttered Fashion-MNIST (classification, segmentation and
detection scenes), COCO-format detection sets, ImageFolder trees, plain image folders, WebDataset shards and
Hugging Face datasets, behind one registry (:data:`DATASETS`) that each module registers its sets in."""

from dynamicvit.data.cluttered import ClutteredFashionDetection, ClutteredFashionMNIST, ClutteredFashionScenes
from dynamicvit.data.coco import CocoDetection
from dynamicvit.data.fashion import DEFAULT_FASHION_DIR, FASHION_CLASSES, FashionMNIST, load_fashion_mnist, read_idx
from dynamicvit.data.folders import ImageFiles, load_image
from dynamicvit.data.huggingface import HFImages
from dynamicvit.data.registry import (
    DATASETS,
    DataOptions,
    DataSet,
    build_dataset,
    class_names,
    get_dataset,
    register_dataset,
)
from dynamicvit.data.skipping import skipped_records
from dynamicvit.data.targets import collate_detection
from dynamicvit.data.webdataset import ShardedImages

__all__ = [
    "DATASETS",
    "DEFAULT_FASHION_DIR",
    "FASHION_CLASSES",
    "ClutteredFashionDetection",
    "ClutteredFashionMNIST",
    "ClutteredFashionScenes",
    "CocoDetection",
    "DataOptions",
    "DataSet",
    "FashionMNIST",
    "HFImages",
    "ImageFiles",
    "ShardedImages",
    "build_dataset",
    "class_names",
    "collate_detection",
    "get_dataset",
    "load_fashion_mnist",
    "load_image",
    "read_idx",
    "register_dataset",
    "skipped_records",
]
