import importlib.util
import pathlib

import keras
import numpy as np

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
