import importlib.util
import pathlib

import keras
import numpy as np

import aefs_keras as ak

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_model_example_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model, data, result = load("custom_model").main(rows=20_000, epochs=2)
    assert result["auc"] > 0.6  # learned something real on the planted signal
    x = {k: v[:50] for k, v in data.test_arrays[0].items()}
    model.save(tmp_path / "custom.keras")
    again = keras.models.load_model(tmp_path / "custom.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    # Serving keeps the selector and the main model only, whatever the layers
    # of this hand-composed model are named.
    serving = ak.inference_model(model)
    kept = {id(w) for w in serving.weights}
    aux_head = [l for l in model.layers if isinstance(l, keras.layers.Dense) and l.units in (8, 1)
                and any(id(w) not in kept for w in l.weights)]
    assert len(aux_head) == 2  # Dense(8) and Dense(1) of the small head
    assert not any(isinstance(l, ak.layers.AlignmentLoss) for l in serving.layers)
    assert len(serving.weights) < len(model.weights)
    served = serving(x, training=False)
    np.testing.assert_allclose(served["probability"], model.predict(x, verbose=0), atol=1e-6)
    assert served["selected_fields"].shape == (50, 4)
