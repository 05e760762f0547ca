"""aefs-keras: adaptive early feature selection and MLCC for CTR, on Keras 3."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from aefs_keras import layers  # noqa: E402
from aefs_keras.builder import BACKBONES, build_model, default_compile, register_backbone  # noqa: E402
from aefs_keras.callbacks import FieldSelectionFrequency, selection_frequency  # noqa: E402
from aefs_keras.efficiency import activated_embedding_parameters, model_costs  # noqa: E402
from aefs_keras.memory import memory_plan  # noqa: E402
from aefs_keras.model import CTRModel  # noqa: E402
from aefs_keras.schema import Categorical, Numeric, Schema  # noqa: E402
from aefs_keras import datasets, distributed, importance, ops, optimizers  # noqa: E402
from aefs_keras.export import example_feature_spec, export, inference_model, saved_model_ops  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BACKBONES", "CTRModel", "Categorical", "FieldSelectionFrequency", "Numeric", "Schema",
    "selection_frequency",
    "activated_embedding_parameters", "build_model", "datasets", "default_compile", "distributed", "importance", "optimizers", "example_feature_spec",
    "export", "inference_model", "layers", "memory_plan", "model_costs", "saved_model_ops",
    "register_backbone",
]
