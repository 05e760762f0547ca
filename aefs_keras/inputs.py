"""Plain values -> the model's inputs.

`CTRModel.fit`, `evaluate`, `predict` and `selection_frequency` pass what
the user gives through `model_inputs` first, so that they take what a user
has at hand, not only what Keras' array adapter takes:

- a dict of numpy arrays of any string dtype ('<U', 'S', object), of
  Python lists, or of tensors;
- list fields (`MultiCategorical`) as lists of mixed lengths,
  `tf.RaggedTensor` or `tf.SparseTensor`: padded as the model expects
  ("" for strings, -1 for integer ids, 0 for weights);
- a `tf.data.Dataset` whose list fields are ragged or sparse.

Anything else about the values (a missing feature, a float fed as an id)
is left to `Schema.check_feature_dtypes`, which names the feature.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import tensorflow as tf

from aefs_keras.schema import list_padding


def _padding_of(schema, name):
    dtype = (schema.input_specs().get(name) or ((), "string"))[1] if schema is not None else "string"
    return list_padding(dtype)


def _is_list_input(schema, name):
    return schema is not None and schema.input_specs().get(name, ((),))[0] == (None,)


def _dense(value, name, schema):
    """One feature's values as an array or tensor Keras takes."""
    pad = _padding_of(schema, name)
    if isinstance(value, tf.RaggedTensor):
        return value.to_tensor(default_value=pad)
    if isinstance(value, tf.SparseTensor):
        # Entries the sparse tensor leaves out are padding, not "" or 0 ids.
        return tf.sparse.to_dense(tf.sparse.reorder(value), default_value=pad)
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value
    if isinstance(value, (list, tuple)) and _is_list_input(schema, name) and any(
            isinstance(v, (list, tuple, np.ndarray)) for v in value):
        width = max((len(v) for v in value), default=0)
        kind = "string" if any(isinstance(e, (str, bytes)) for v in value for e in v) else None
        rows = [list(v) + [pad] * (width - len(v)) for v in value]
        value = np.array(rows, dtype=object if kind else None).reshape(len(rows), width)
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and arr.size and isinstance(arr.flat[0], (list, tuple, np.ndarray)):
        return _dense(list(arr), name, schema)
    if arr.dtype.kind in "USO":
        # Keras' array adapter refuses numpy text dtypes ('<U', 'S', object);
        # a tf.string tensor goes through.
        try:
            # Object arrays as lists: str and bytes alike (astype(str) would write "b'x'").
            return tf.constant(arr.tolist() if arr.dtype.kind == "O" else arr, tf.string)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Feature `{name}` holds values that are not all text: {e}") from None
    return arr


def model_inputs(schema, x: Any) -> Any:
    """`x` with each feature in a form Keras takes (see the module doc).

    Returns `x` unchanged when it is neither a dict nor a dataset with
    ragged or sparse parts.
    """
    if isinstance(x, dict):
        return {name: _dense(value, name, schema) for name, value in x.items()}
    if isinstance(x, tf.data.Dataset):
        return _dense_dataset(schema, x)
    return x


def _dense_dataset(schema, ds):
    spec = ds.element_spec
    flat = tf.nest.flatten(spec)
    if not any(isinstance(s, (tf.RaggedTensorSpec, tf.SparseTensorSpec)) for s in flat):
        return ds

    def densify(*element):
        def one(features):
            if not isinstance(features, dict):
                return features
            return {k: _dense(v, k, schema) for k, v in features.items()}
        if len(element) == 1:
            return one(element[0])
        return (one(element[0]), *element[1:])

    return ds.map(densify, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def row_count(x: Any) -> int | None:
    """Rows of a dict of arrays or tensors (None for anything else, or
    where no feature's row count is known). ValueError when the features
    have different row counts (Keras' own error then names none of them)."""
    if not isinstance(x, dict) or not x:
        return None
    counts = {}
    for name, value in x.items():
        shape = getattr(value, "shape", None)
        if shape is None:
            shape = np.shape(value)
        if len(shape) and shape[0] is not None:
            counts[name] = int(shape[0])
    if not counts:
        return None
    rows = collections.Counter(counts.values()).most_common(1)[0][0]
    odd = {name: n for name, n in counts.items() if n != rows}
    if odd:
        raise ValueError(f"Every feature needs one value per row: most have {rows} rows, but "
                         + ", ".join(f"`{name}` has {n}" for name, n in sorted(odd.items())))
    return rows



def check_labels(y: Any, what: str = "y") -> None:
    """Raise ValueError unless every label in `y` (arrays or tensors) is a
    finite number in [0, 1]: binary cross-entropy takes a label of 2, -1 or
    NaN without complaint and trains on nonsense. Anything else (None, a
    dataset, text: Keras' own error) passes through."""
    if y is None or isinstance(y, (tf.data.Dataset, dict)):
        return
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):
        return
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        return
    values = arr.astype("float64", copy=False).reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
    bad = ~((values >= 0.0) & (values <= 1.0)).all(axis=1)  # NaN compares False
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`{what}` must hold click labels in [0, 1] (0 or 1, or a rate); {int(bad.sum())} of {len(values)} rows do not, "
                         f"the first at row {first}: {values[first].tolist()}")

