"""Datasets, layered as the data flows (each module imports only those above it):

formats.py      file formats declared (TextFormat, LibsvmFormat, CRITEO, ...)
readers.py      text files -> (features, label) batches (read_text, read_libsvm)
records.py      TFRecord and Parquet
preprocess.py   the fitting rules and the preprocessing artifact
loader.py       load(): one entry point over all of them
ctr_data.py     CTRData, the train / valid / test container
synthetic.py    the built-in default data with a planted answer
benchmark_data.py  the small real sets under ../shared/data
"""

from aefs_keras.datasets.formats import (FORMATS, FRAPPE_FIELDS, LibsvmFormat, ReadReport, TextFormat, csv_format,
                                         libsvm_schema)
from aefs_keras.datasets.readers import read_libsvm, read_text
from aefs_keras.datasets.records import read_parquet, read_tfrecord, write_tfrecord_shards
from aefs_keras.datasets.preprocess import (Preprocessing, fit_preprocessing, fit_schema, log_squared_boundaries,
                                            quantile_boundaries, vocabulary)
from aefs_keras.datasets.loader import load
from aefs_keras.datasets.ctr_data import CTRData, to_dataset
from aefs_keras.datasets.synthetic import SyntheticData, synthetic
from aefs_keras.datasets.benchmark_data import load_benchmark

__all__ = ["FORMATS", "FRAPPE_FIELDS", "LibsvmFormat", "ReadReport", "TextFormat", "csv_format", "libsvm_schema",
           "read_libsvm", "read_text", "read_parquet", "read_tfrecord", "write_tfrecord_shards", "Preprocessing",
           "fit_preprocessing", "fit_schema", "log_squared_boundaries", "quantile_boundaries", "vocabulary",
           "load", "CTRData", "to_dataset", "SyntheticData", "synthetic", "load_benchmark"]
