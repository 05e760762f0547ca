"""The feature kinds through every backbone and every selection (MODELS),
trained, saved, exported and served: .keras round trips, a process that imports only TensorFlow,
TF's C API loader with list tensors, and REST list requests. (Apart from
test_feature_kinds.py so that the two halves run side by side.)"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import aefs_keras as ak
from test_feature_kinds import _features, _mixed_schema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Every backbone with AEFS (the kinds reach both of its embeddings), and the
# other selections once each on a backbone with a first-order part. The kinds
# are embedded before any backbone, so the other (backbone, selection) pairs
# would repeat these paths; every pair's .keras round trip on a plain schema
# is in test_builder.py.
MODELS = [(b, "aefs") for b in ak.BACKBONES] + [("deepfm", None), ("wide_deep", "adafs")]


def _dataset():
    f = _features()
    return tf.data.Dataset.from_tensor_slices((f, tf.constant([1.0, 0.0, 1.0, 0.0]))).repeat(4).batch(4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The MODELS pairs on the mixed schema: trained, saved as
    .keras and exported; {(backbone, selection): (model, .keras path,
    export path)}.

    DeepFM + AEFS trains in graph mode and exports the tf.Example
    signature too; the others train eagerly and export `serving_default`
    only (the same ops, at a third of the tracing time, which is most of
    this fixture's cost; graph-mode training with these kinds is also in
    test_cli_own_data_kinds.py and test_readers.py)."""
    base = tmp_path_factory.mktemp("mixed")
    out = {}
    for backbone, selection in MODELS:
        keras.utils.set_random_seed(0)
        kw = {"k": 3} if selection else {}
        full = (backbone, selection) == ("deepfm", "aefs")
        model = ak.default_compile(ak.build_model(_mixed_schema(), backbone, selection, hidden_units=[8],
                                                  d_main=8, **kw), run_eagerly=not full)
        hist = model.fit(_dataset(), epochs=1, verbose=0)  # 4 steps
        assert np.isfinite(hist.history["loss"]).all(), (backbone, selection)
        name = f"{backbone}_{selection}"
        model.save(str(base / f"{name}.keras"))
        out[backbone, selection] = (model, str(base / f"{name}.keras"),
                                    ak.export(model, str(base), name, example_signature=full))
    return out


@pytest.mark.parametrize("backbone, selection", MODELS)
def test_mixed_schema_trains_and_reloads(exported, backbone, selection):
    model, path, _ = exported[backbone, selection]
    before = model(_features())
    after = keras.saving.load_model(path)(_features())
    for a, b in zip(tf.nest.flatten(before), tf.nest.flatten(after)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


_REQUEST = """dict(item=tf.constant(["a", "b", "zz", "d"]),
             history=tf.constant([["a", "b", ""], ["", "", ""], ["c", "c", "d"], ["q", "", ""]]),
             tags=tf.constant([["x", "y"], ["", ""], ["z", ""], ["x", ""]]),
             price=tf.constant([1.0, float("nan"), 3.0, 0.0]),
             user=tf.constant([1, 2, 3, 40], tf.int64),
             age=tf.constant([10.0, 20.0, 40.0, float("nan")]))"""


def test_mixed_schema_serves_in_a_fresh_process(exported):
    """All the exports, in one process that imports TensorFlow only; the
    request has an empty list, unseen values ("zz", "q", user 40) and NaNs."""
    paths = {f"{b}/{s}": e for (b, s), (_, _, e) in exported.items()}
    script = textwrap.dedent(f"""
        import json, sys, tensorflow as tf
        out = {{}}
        for key, path in {paths!r}.items():
            answer = tf.saved_model.load(path).signatures["serving_default"](**{_REQUEST})
            out[key] = answer["probability"].numpy().ravel().tolist()
            if "selected_fields" in answer:
                out[key + "/selected"] = answer["selected_fields"].numpy().tolist()
        print(json.dumps(out))
        print(any(m.startswith("aefs_keras") for m in sys.modules))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False"
    served = json.loads(lines[-2])
    for (backbone, selection), (model, _, _) in exported.items():
        want = model(_features())
        want = want["probability"] if isinstance(want, dict) else want  # no selection: the probability only
        key = f"{backbone}/{selection}"
        np.testing.assert_allclose(served[key], want.numpy().ravel(), atol=1e-6, err_msg=key)
        if selection:
            assert np.array(served[key + "/selected"]).shape == (4, 3), key


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_c_api_loader_takes_lists(exported, tmp_path):
    """TF Serving's loader (the C API) with (rows, length) list inputs."""
    from c_api import run_c_api

    model, _, path = exported["deepfm", "aefs"]
    x = {k: v.numpy() for k, v in _features().items()}
    got = run_c_api(path, x, tmp_path)
    np.testing.assert_allclose(got["probability"], model(_features())["probability"].numpy().ravel(), atol=1e-6)


@pytest.mark.parametrize("name", ["history_request_instances.json", "history_request_inputs.json"])
def test_rest_list_requests_give_the_models_answer(name, tmp_path):
    """examples/serving/history_request_*.json (lists of one length, -1
    padding, an empty history, unseen ids, a NaN price) through TF Serving's
    JSON rules give what the model gives."""
    sys.path.insert(0, os.path.join(ROOT, "examples", "serving"))
    import client

    data = ak.datasets.history_data(num_rows=500)
    keras.utils.set_random_seed(0)
    model = ak.default_compile(ak.build_model(data.schema, "deepfm", hidden_units=[8], d_main=8))
    model.fit(data.pipelines(0)[0], epochs=1, verbose=0)
    path = ak.export(model, str(tmp_path), "history")
    with open(os.path.join(ROOT, "examples", "serving", name)) as f:
        request = json.load(f)
    answer = client.predict_local(path, request)
    got = ([r["probability"] for r in answer["predictions"]] if "instances" in request
           else answer["outputs"]["probability"])
    columns = (request["inputs"] if "inputs" in request
               else {k: [r[k] for r in request["instances"]] for k in request["instances"][0]})
    x = {k: np.array(v, "float32" if k == "price" else "int64") for k, v in columns.items()}
    np.testing.assert_allclose(np.array(got).ravel(), model.predict(x, verbose=0).ravel(), atol=1e-6)
    assert np.isnan(x["price"][1]) and (x["history"][1] == -1).all()
    with pytest.raises(ValueError, match="input 'history': every row must send a list of one length"):
        client.request_to_tensors({"inputs": {**columns, "history": [[1, 2], [3], [4, 5]]}},
                                  {k: ("float32" if k == "price" else "int64") for k in columns})
