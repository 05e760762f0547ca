"""Export: TF Serving layout, raw features, no dependency on aefs_keras at load time."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import aefs_keras as ak
from aefs_keras.serving import served_graph


@pytest.fixture(scope="module")
def trained():
    data = ak.datasets.synthetic(num_rows=3000, num_numeric=3, num_categorical=5,
                                 vocabulary_size=50, num_informative=3, num_interactions=1,
                                 batch_size=256, seed=5)
    model = ak.default_compile(ak.build_model(data.schema, "deepfm", "aefs", k=4,
                                              hidden_units=[16], d_main=8))
    model.fit(data.train, epochs=1, verbose=0)
    return model, data


def test_export_layout_and_fresh_process_load(trained, tmp_path):
    model, data = trained
    path = ak.export(model, str(tmp_path), "ctr")
    assert path == str(tmp_path / "ctr" / "1")
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
    assert [n for n in os.listdir(tmp_path / "ctr")] == ["1"]  # no temporary left behind
    x = {k: v[:64] for k, v in data.test_arrays[0].items()}
    expected = model.predict(x, verbose=0)
    np.savez(tmp_path / "x.npz", **x)
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        fn = loaded.signatures["serving_default"]
        x = dict(np.load({str(tmp_path / 'x.npz')!r}))
        out = fn(**{{k: tf.constant(v) for k, v in x.items()}})
        assert "aefs_keras" not in sys.modules
        print(json.dumps({{k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist()
                          for k, v in out.items()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(out["probability"]), expected, atol=1e-5)
    selected = np.array(out["selected_fields"])
    assert selected.shape == (64, 4) and (np.diff(selected, axis=1) > 0).all()
    # The same selection by name, for a reader of the response without the schema.
    np.testing.assert_array_equal(np.array(out["selected_field_names"]), np.array(model.schema.names)[selected])


def test_export_stores_each_variable_once(trained, tmp_path):
    model, _ = trained
    def stored(path):
        return sum(os.path.getsize(os.path.join(path, "variables", f)) for f in os.listdir(os.path.join(path, "variables")))

    served = sum(int(np.prod(w.shape)) * 4 for w in ak.inference_model(model).weights)
    plain = stored(ak.export(model, str(tmp_path), "plain", specialize=False))
    assert served <= plain < 1.2 * served  # Keras alone writes each table twice
    # The specialised graph (mixed resolution) stores its own copies of the
    # first layer's blocks, the folded fill and the merged small tables
    # instead of the originals, nothing twice.
    plan = served_graph(model)[0]
    own = sum(int(np.prod(w.shape)) * 4 for w in plan.own_weights)
    assert stored(ak.export(model, str(tmp_path), "ctr")) < 1.1 * (plain + own)


def test_export_refuses_to_overwrite(trained, tmp_path):
    model, _ = trained
    first = ak.export(model, str(tmp_path), "ctr", version=3)
    stamp = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ak.export(model, str(tmp_path), "ctr", version=3)
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == stamp
    assert ak.export(model, str(tmp_path), "ctr") == str(tmp_path / "ctr" / "4")
    ak.export(model, str(tmp_path), "ctr", version=3, overwrite=True)
    assert sorted(os.listdir(tmp_path / "ctr")) == ["3", "4"]
    with pytest.raises(ValueError, match="version=0"):
        ak.export(model, str(tmp_path), "ctr", version=0)


def test_crash_mid_export_leaves_no_loadable_version(trained, tmp_path, monkeypatch):
    model, _ = trained
    import importlib

    export_module = importlib.import_module("aefs_keras.serving")

    def boom(serving, signature, path, *args):  # dies after writing part of the files
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "saved_model.pb"), "w").close()
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_write_saved_model", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ak.export(model, str(tmp_path), "ctr", version=1)
    # TF Serving loads all-digit directories only; none may exist.
    assert not [n for n in os.listdir(tmp_path / "ctr") if n.isdigit()]
    assert os.listdir(tmp_path / "ctr") == []


def test_inference_model_drops_the_auxiliary_head(trained):
    model, _ = trained
    serving = ak.inference_model(model)
    names = {l.name for l in serving.layers}
    assert "aux_backbone" not in names and "alignment" not in names
    assert {"selector", "main_embedding", "backbone"} <= names
