"""A short TF Serving REST client for an aefs-keras export.

    # against a running server (see README.md for the docker command):
    python examples/serving/client.py examples/serving/request_instances.json \
        --url http://localhost:8501/v1/models/demo_aefs:predict
    # or locally, converting the JSON to tensors the way TF Serving does:
    python examples/serving/client.py examples/serving/request_inputs.json \
        --local saved_models/serving/demo_aefs/1

It needs only numpy and (for --local) tensorflow, never aefs_keras: the
export is self-contained.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

import numpy as np

# JSON value types TF Serving accepts for each signature dtype.
_JSON_TYPES = {
    "string": (str,),
    "int64": (int,),
    "int32": (int,),
    "float32": (int, float),
    "float64": (int, float),
}


def request_to_tensors(request: dict, input_dtypes: dict[str, str],
                       input_ranks: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Turns a REST predict body into one array per signature input.

    Follows TF Serving's rules: `{"instances": [{name: value}, ...]}` (row
    format; every row names every input) or `{"inputs": {name: [values]}}`
    (column format). A missing, unknown or mistyped input, or a list where
    the signature takes one value (`input_ranks`: 1 for one value per row, 2
    for a list per row), is a ValueError that names it.
    """
    if not isinstance(request, dict):
        raise ValueError(f"the body must be a JSON object with 'instances' or 'inputs'; got {type(request).__name__}")
    if set(request) == {"instances"}:
        rows = request["instances"]
        if not isinstance(rows, list) or not rows:
            raise ValueError("'instances' must be a non-empty list of objects")
        columns = {}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"instance {i} must be an object keyed by input name")
            _check_names(row, input_dtypes, where=f"instance {i}")
            for name in input_dtypes:
                columns.setdefault(name, []).append(row[name])
    elif set(request) == {"inputs"}:
        columns = request["inputs"]
        if not isinstance(columns, dict):
            raise ValueError("'inputs' must be an object keyed by input name")
        _check_names(columns, input_dtypes, where="'inputs'")
        sizes = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError("every input in 'inputs' must be a list, all of the same length")
    else:
        raise ValueError(f"the body must have exactly one of 'instances' or 'inputs'; got keys {sorted(request)}")
    tensors = {}
    for name, dtype in input_dtypes.items():
        values = columns[name]
        # A list feature sends one list per row; TF Serving batches them into
        # one dense tensor, so every row's list must have one length (pad
        # with "" or -1).
        lengths = {len(v) if isinstance(v, list) else None for v in values}
        if len(lengths) > 1:
            raise ValueError(f"input {name!r}: every row must send a list of one length, or every row a "
                             f"single value (pad lists with \"\" or -1); got lengths {sorted(map(str, lengths))}")
        is_list = bool(values) and None not in lengths
        rank = (input_ranks or {}).get(name)
        if rank is not None and values and is_list != (rank == 2):
            raise ValueError(f"input {name!r} takes " + ("a list per row" if rank == 2 else "one value per row, "
                             "not a list"))
        for j, v in enumerate(values):
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, bool) or not isinstance(item, _JSON_TYPES[dtype]):
                    raise ValueError(
                        f"input {name!r}, element {j}: JSON value {item!r} is not of the expected type {dtype}"
                    )
                if dtype in _INT_RANGE and not _INT_RANGE[dtype][0] <= item <= _INT_RANGE[dtype][1]:
                    raise ValueError(f"input {name!r}, element {j}: {item} is out of the range of {dtype}")
        if not values and rank == 2:
            tensors[name] = np.zeros((0, 0), dtype=object if dtype == "string" else dtype)
        else:
            tensors[name] = np.array(values, dtype=object if dtype == "string" else dtype)
    return tensors


_INT_RANGE = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}


def _check_names(given: dict, input_dtypes: dict, where: str) -> None:
    missing = [n for n in input_dtypes if n not in given]
    unknown = [n for n in given if n not in input_dtypes]
    if missing:
        raise ValueError(f"{where}: missing input(s) {missing}")
    if unknown:
        raise ValueError(f"{where}: unknown input(s) {unknown}; the signature takes {sorted(input_dtypes)}")


def outputs_to_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's answer: `predictions` (one object per row) for the row
    format, `outputs` (one list per output) for the column format."""
    if row_format:
        n = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def predict_local(export_dir: str, request: dict) -> dict:
    """Runs a REST body against `serving_default` in this process."""
    import tensorflow as tf

    fn = tf.saved_model.load(export_dir).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    dtypes = {name: spec.dtype.name for name, spec in specs.items()}
    tensors = request_to_tensors(request, dtypes, {name: spec.shape.rank for name, spec in specs.items()})
    out = fn(**{k: to_tensor(v, dtypes[k]) for k, v in tensors.items()})
    # Strings come back as text in TF Serving's JSON (selected_field_names).
    return outputs_to_response({k: v.numpy().astype(str) if v.dtype == tf.string else v.numpy()
                                for k, v in out.items()}, "instances" in request)


def to_tensor(array: np.ndarray, dtype: str):
    """A request array as the signature's tensor, keeping its shape (an
    object array of no rows stays (0, 0))."""
    import tensorflow as tf

    if dtype == "string":
        return tf.reshape(tf.constant(array.reshape(-1).tolist(), tf.string), array.shape)
    return tf.constant(array, dtype=dtype)


def predict_rest(url: str, request: dict, timeout: float = 10.0) -> dict:
    """POSTs a REST body to a running TF Serving."""
    data = json.dumps(request).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("request", help="a JSON request body (instances or inputs format)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="TF Serving predict URL, e.g. http://localhost:8501/v1/models/demo_aefs:predict")
    where.add_argument("--local", help="a SavedModel version directory to run in this process")
    args = parser.parse_args(argv)
    with open(args.request) as f:
        request = json.load(f)
    answer = predict_rest(args.url, request) if args.url else predict_local(args.local, request)
    json.dump(answer, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
