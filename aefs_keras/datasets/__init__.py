"""Datasets, layered as the data flows (each module imports only those above it):

formats.py      file formats declared (TextFormat, LibsvmFormat, CRITEO, ...)
readers.py      text files -> (features, label) batches (read_text, read_libsvm)
records.py      TFRecord and Parquet
preprocess.py   the fitting rules and the preprocessing artifact
loader.py       load(): one entry point over all of them
infer.py        a user's own file: the format read off its header and a sample
ctr_data.py     CTRData, the train / valid / test container
synthetic_data.py  the built-in default data with a planted answer
planted_history.py a planted answer in a user history (a multi-valued field)
benchmark_data.py  the small real sets under ../shared/data
"""

import importlib as _importlib

# Name -> module; loaded on first use, so that reading a header
# (`infer_format`) does not start TensorFlow.
_EXPORTS = {
    "FORMATS": "formats", "FRAPPE_FIELDS": "formats", "LibsvmFormat": "formats", "ReadReport": "formats",
    "TextFormat": "formats", "csv_format": "formats", "libsvm_schema": "formats",
    "infer_format": "infer",
    "read_libsvm": "readers", "read_text": "readers",
    "read_parquet": "records", "read_tfrecord": "records", "write_tfrecord_shards": "records",
    "Preprocessing": "preprocess", "fit_preprocessing": "preprocess", "fit_schema": "preprocess",
    "log_squared_boundaries": "preprocess", "quantile_boundaries": "preprocess", "vocabulary": "preprocess",
    "load": "loader",
    "CTRData": "ctr_data", "to_dataset": "ctr_data",
    "SyntheticData": "synthetic_data", "synthetic": "synthetic_data",
    "history_data": "planted_history",
    "load_benchmark": "benchmark_data",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aefs_keras.datasets' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
