"""Datasets decoded once into cached uint8 tensors, a fixed validation split, and an on-device batch loader.

Modules: datasets (what each dataset is), sources (reading and caching its files), splits (the run's train,
validation and test tensors) and batches (augmented, normalised batches on the device).
"""

from .batches import Augment, BatchLoader, spread
from .datasets import DATASETS, DatasetInfo, dataset_info, dataset_title
from .sources import RawData, load_raw
from .splits import Splits, channel_stats, load_splits, validation_split

__all__ = ["DATASETS", "Augment", "BatchLoader", "DatasetInfo", "RawData", "Splits", "channel_stats", "dataset_info", "dataset_title",
           "load_raw", "load_splits", "spread", "validation_split"]
