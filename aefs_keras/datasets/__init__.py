"""Datasets: the synthetic default and file readers."""

from aefs_keras.datasets.benchmark_data import CTRData, load_benchmark, log_squared_boundaries
from aefs_keras.datasets.readers import (FORMATS, LibsvmFormat, ReadReport, TextFormat, csv_format,
                                         read_parquet, read_tfrecord, write_tfrecord_shards)
from aefs_keras.datasets.preprocess import Preprocessing, fit_preprocessing
from aefs_keras.datasets.loader import load
from aefs_keras.datasets.libsvm import FRAPPE_FIELDS, libsvm_schema, read_libsvm
from aefs_keras.datasets.synthetic import SyntheticData, synthetic

__all__ = ["FORMATS", "LibsvmFormat", "Preprocessing", "ReadReport", "TextFormat", "csv_format", "fit_preprocessing",
           "load", "read_parquet", "read_tfrecord", "write_tfrecord_shards", "CTRData", "FRAPPE_FIELDS", "load_benchmark", "log_squared_boundaries", "SyntheticData", "libsvm_schema", "read_libsvm", "synthetic"]
