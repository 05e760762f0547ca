"""Serving checks: raw string features, core ops only, TF's C API loader,
the REST example files, the tf.Example signature and named input errors."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_EXAMPLES = os.path.join(ROOT, "examples", "serving")
sys.path.insert(0, SERVING_EXAMPLES)
import client  # noqa: E402  (examples/serving/client.py)

K = 19  # floor(39 / 2): the demo's k


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    # The demo's schema (39 Criteo-shaped fields, string categoricals), small model.
    data = ak.datasets.synthetic(num_rows=4000, categorical_dtype="string", seed=0, batch_size=512)
    model = ak.default_compile(ak.build_model(data.schema, "deepfm", "aefs", k_ratio=0.5,
                                              hidden_units=[16], d_main=8))
    model.fit(data.train, epochs=1, verbose=0)
    base = tmp_path_factory.mktemp("serving")
    path = ak.export(model, str(base), "demo_aefs")
    return model, data, path


def _fresh_python(script, cwd):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_every_op_is_a_core_tensorflow_op(exported, tmp_path):
    _, _, path = exported
    ops = sorted(ak.saved_model_ops(path))
    assert "StatefulPartitionedCall" in ops and len(ops) > 10  # the walk reached the functions
    banned = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    assert not banned & set(ops)
    # Checked against the op registry of a process that loaded only TensorFlow.
    unknown = json.loads(_fresh_python(f"""
        import json, sys, tensorflow as tf
        from tensorflow.python.framework import op_def_registry
        ops = {ops!r}
        assert not [m for m in sys.modules if m.startswith(("aefs_keras", "keras_rs"))]
        print(json.dumps([op for op in ops if op_def_registry.get(op) is None]))
    """, str(tmp_path)))
    assert unknown == []


def test_raw_strings_unseen_and_empty_categories(exported):
    model, data, path = exported
    # Only the selector and the main model are served: no auxiliary head, no losses.
    served = {layer.name for layer in ak.inference_model(model).layers}
    assert {"selector", "main_embedding", "backbone"} <= served
    assert not {"aux_backbone", "aux_probability", "alignment"} & served
    fn = tf.saved_model.load(path).signatures["serving_default"]
    x = {k: v[:8].copy() for k, v in data.test_arrays[0].items()}
    x["C1"][0] = "never-seen-before"
    x["C2"][1] = ""
    x["I1"][2] = np.nan
    expected = model.predict(x, verbose=0)
    out = fn(**{k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in x.items()})
    np.testing.assert_allclose(out["probability"].numpy(), expected, atol=1e-5)
    assert out["probability"].shape == (8, 1)
    selected = out["selected_fields"].numpy()
    assert selected.shape == (8, K) and (np.diff(selected, axis=1) > 0).all()


def test_missing_input_and_wrong_dtype_name_the_input(exported):
    model, data, path = exported
    fn = tf.saved_model.load(path).signatures["serving_default"]
    x = {k: tf.constant(v[:2].tolist() if v.dtype == object else v[:2])
         for k, v in data.test_arrays[0].items()}
    with pytest.raises(TypeError, match="C5"):
        fn(**{k: v for k, v in x.items() if k != "C5"})
    with open(os.path.join(SERVING_EXAMPLES, "request_instances.json")) as f:
        request = json.load(f)
    dtypes = {n: s.dtype.name for n, s in fn.structured_input_signature[1].items()}
    del request["instances"][1]["C5"]
    with pytest.raises(ValueError, match=r"instance 1: missing input\(s\) \['C5'\]"):
        client.request_to_tensors(request, dtypes)
    request["instances"][1]["C5"] = 17  # an int where the signature wants a string
    with pytest.raises(ValueError, match="input 'C5', element 1.*expected type string"):
        client.request_to_tensors(request, dtypes)
    # The Keras model names the input as well.
    bad = {k: v[:2] for k, v in data.test_arrays[0].items()}
    bad["I3"] = np.array(["a", "b"], dtype=object)
    with pytest.raises(ValueError, match="I3"):
        model.predict(bad, verbose=0)


@pytest.mark.parametrize("name", ["request_instances.json", "request_inputs.json"])
def test_rest_example_files_give_the_documented_answer(exported, name):
    model, data, path = exported
    with open(os.path.join(SERVING_EXAMPLES, name)) as f:
        request = json.load(f)
    answer = client.predict_local(path, request)
    # The documented answer (examples/serving/README.md): one probability and
    # K sorted field indices per row, equal to model.predict on the same rows.
    instances = request.get("instances") or [
        {k: v[i] for k, v in request["inputs"].items()} for i in range(len(request["inputs"]["I1"]))
    ]
    x = {f.name: np.array([r[f.name] for r in instances],
                          dtype=object if f.input_dtype == "string" else f.input_dtype)
         for f in data.schema.fields}
    expected = model.predict(x, verbose=0)
    if "instances" in request:
        rows = answer["predictions"]
        probability = np.array([r["probability"] for r in rows])
        selected = np.array([r["selected_fields"] for r in rows])
    else:
        probability = np.array(answer["outputs"]["probability"])
        selected = np.array(answer["outputs"]["selected_fields"])
    assert probability.shape == (3, 1) and selected.shape == (3, K)
    np.testing.assert_allclose(probability, expected, atol=1e-5)
    assert ((selected >= 0) & (selected < 39)).all() and (np.diff(selected, axis=1) > 0).all()


def test_tf_example_regress_signature(exported):
    model, data, path = exported
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["regress"]
    x = {k: v[:5] for k, v in data.test_arrays[0].items()}
    serialized = []
    for i in range(5):
        feats = {}
        for f in data.schema.fields:
            v = x[f.name][i]
            if f.name == "I4":
                continue  # left out: a missing value
            if f.input_dtype == "string":
                feats[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
            else:
                feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    out = fn(inputs=tf.constant(serialized))
    assert list(out) == ["outputs"]
    x["I4"] = np.full(5, np.nan, "float32")
    np.testing.assert_allclose(out["outputs"].numpy(), model.predict(x, verbose=0)[:, 0], atol=1e-5)
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    sig = proto.meta_graphs[0].signature_def["regress"]
    assert sig.method_name == "tensorflow/serving/regress" and list(sig.inputs) == ["inputs"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_api_loader_matches_python(exported, tmp_path):
    from c_api import run_c_api

    model, data, path = exported
    x = {k: v[:16].copy() for k, v in data.test_arrays[0].items()}
    x["C3"][0] = "never-seen-before"
    x["C4"][1] = ""
    got = run_c_api(path, x, tmp_path)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(got["probability"], expected[:, 0], atol=1e-5)
    python_selected = tf.saved_model.load(path).signatures["serving_default"](
        **{k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in x.items()}
    )["selected_fields"].numpy()
    np.testing.assert_array_equal(got["selected_fields"].reshape(16, K), python_selected)


def test_export_command_line(exported, tmp_path):
    from aefs_keras import cli

    model, data, _ = exported
    keras_path = str(tmp_path / "m.keras")
    model.save(keras_path)
    assert cli.main(["export", keras_path, str(tmp_path / "serving"), "ctr", "--version", "7"]) == 0
    path = tmp_path / "serving" / "ctr" / "7"
    assert (path / "saved_model.pb").exists()
    with pytest.raises(FileExistsError):
        cli.main(["export", keras_path, str(tmp_path / "serving"), "ctr", "--version", "7"])
    x = {k: v[:4] for k, v in data.test_arrays[0].items()}
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        **{k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in x.items()})
    np.testing.assert_allclose(out["probability"].numpy(), model.predict(x, verbose=0), atol=1e-5)
