import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# default_compile's automatic XLA choice off: most tests train a few steps,
# where compiling costs more than it saves (tests/test_xla.py turns it on).
os.environ.setdefault("AEFS_KERAS_XLA", "0")
# One intra-op thread per process: the suite runs two workers (and their
# subprocesses) on two cores, where TensorFlow's default of one thread per
# core in each process oversubscribes them (12 % slower on four heavy files).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pathlib

import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(sub: str) -> pathlib.Path:
    """Path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared datasets are not beside this checkout)")
    return path


@pytest.fixture(scope="module", autouse=True)
def _fresh_keras_state():
    """Each test file starts from a clear Keras session: a worker runs many
    files one after another, and the models and traced functions of earlier
    files otherwise stay alive (and slow later tracing) until it exits.
    clear_session collects garbage; what survives it is then frozen, so that
    later full collections do not rescan it (they took 2-4 s each late in a
    worker's run)."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.freeze()
    yield
