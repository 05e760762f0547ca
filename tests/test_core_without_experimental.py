"""The core stands alone: with `aefs_keras.experimental` unimportable, every
core method builds, trains a step, saves, reloads and exports with a
backbone that takes mixed widths (DeepFM), the static mixed-dimension model
with one that does not (MLCC), and every other backbone does with AEFS (in a subprocess: the block must not
leak into other tests)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import sys, tempfile
    sys.modules["aefs_keras.experimental"] = None  # any import of it now fails
    import numpy as np, keras, tensorflow as tf
    import aefs_keras as ak

    schema = ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=9) for i in range(6)])
    rng = np.random.default_rng(0)
    x = {f"c{i}": rng.integers(0, 9, 64) for i in range(6)}
    y = rng.integers(0, 2, 64).astype("float32")
    imp = [0.3, 0.1, 0.0, 0.2, 0.05, 0.0]
    methods = {"none": None, "static": ak.StaticTopK(k=3, importance=imp),
               "mixed_dimension": ak.MixedDimension(k=3, importance=imp), "adafs": ak.AdaFS(k=3),
               "aefs": ak.AEFS(k=3),
               "aefs_single": ak.AEFS(k=3, resolution="single")}
    tmp = tempfile.mkdtemp()
    done = 0
    pairs = [("deepfm", m) for m in methods] + [("mlcc", "mixed_dimension")]
    pairs += [(b, "aefs") for b in ("dnn", "dcn", "wide_deep", "mlcc", "mc_mlcc")]
    for backbone, name in pairs:
        sel = methods[name]
        # Eager: what is checked is that the code runs without the experimental package, which a
        # trace would only run again as a graph (at more cost than the step); the export is traced.
        model = ak.default_compile(ak.build_model(schema, backbone, sel, d_main=4, hidden_units=[4]),
                                   run_eagerly=True)
        model.train_on_batch(x, y)
        want = model.predict_on_batch(x)
        path = f"{tmp}/{backbone}_{name}.keras"
        model.save(path)
        np.testing.assert_allclose(keras.models.load_model(path).predict_on_batch(x), want, atol=1e-6)
        if backbone == "deepfm" or (backbone, name) == ("mlcc", "mixed_dimension"):  # mixed widths, or not
            exported = ak.export(model, f"{tmp}/serving", f"{backbone}_{name}")
            served = tf.saved_model.load(str(exported)).signatures["serving_default"]
            got = served(**{k: tf.constant(v) for k, v in x.items()})
            np.testing.assert_allclose(got["probability"].numpy(), want, atol=1e-5)
        done += 1
    assert "aefs_keras.experimental" not in [m for m in sys.modules if sys.modules[m] is not None]
    print("checked", done)
''')


def test_every_core_method_without_experimental():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("checked 12")
