"""Runs an exported SavedModel through TensorFlow's C API, the loader TF
Serving uses (tests/native/run_saved_model.c, compiled once per process
against the TensorFlow wheel's libraries)."""

import functools
import os
import struct
import subprocess
import tempfile

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def _binary():
    tf_dir = os.path.dirname(tf.__file__)
    lib = os.path.join(tf_dir, "libtensorflow_cc.so.2")
    assert os.path.exists(lib), f"the tensorflow wheel has no {lib}"
    binary = os.path.join(tempfile.mkdtemp(), "run_saved_model")
    # No libtensorflow_cc.so symlink ships in the wheel: link the .so.2 by path.
    build = subprocess.run(
        ["gcc", "-O1", "-o", binary, os.path.join(ROOT, "tests", "native", "run_saved_model.c"),
         f"-I{os.path.join(tf_dir, 'include')}", lib, os.path.join(tf_dir, "libtensorflow_framework.so.2"),
         f"-Wl,-rpath,{tf_dir}"],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    return binary


def run_c_api(path, x, tmp_path):
    """`serving_default` of the export at `path` on the numpy inputs `x`
    (1-D, or 2-D for list features; object arrays hold str or bytes).
    Returns {output key: flat float64 values}, the string outputs left out
    (the loader prints numbers only)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    sig = proto.meta_graphs[0].signature_def["serving_default"]
    lines = []
    for key, info in sig.inputs.items():
        op, index = info.name.split(":")
        file = os.path.join(str(tmp_path), f"in_{key}")
        values = np.asarray(x[key])
        with open(file, "wb") as f:
            if values.dtype == object or values.dtype.kind in "SU":
                for s in values.ravel():
                    b = s if isinstance(s, bytes) else str(s).encode()
                    f.write(struct.pack("<I", len(b)) + b)
                dtype = "string"
            else:
                dtype = {"float32": "float", "int64": "int64"}[values.dtype.name]
                f.write(values.astype("<" + values.dtype.str[1:]).tobytes())
        lines.append(f"input {op} {index} {dtype} {'x'.join(str(n) for n in values.shape)} {file}")
    keys = {}
    for key, info in sig.outputs.items():
        if info.dtype == tf.string.as_datatype_enum:
            continue
        op, index = info.name.split(":")
        lines.append(f"output {op} {index}")
        keys[f"{op}:{index}"] = key
    spec = os.path.join(str(tmp_path), "spec.txt")
    with open(spec, "w") as f:
        f.write("\n".join(lines) + "\n")
    run = subprocess.run([_binary(), path, spec], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    got = {}
    for line in run.stdout.strip().splitlines():
        name, n, *values = line.split()
        assert len(values) == int(n)
        got[keys[name]] = np.array(values, dtype="float64")
    return got
