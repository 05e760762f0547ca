"""aefs-keras: adaptive early feature selection and MLCC for CTR, on Keras 3.

Importing the package is cheap: TensorFlow and Keras load when a name that
needs them is first used (so `aefs-keras --help` answers at once). The
layers are registered for `.keras` loading as soon as Keras is imported,
before or after this package.
"""

import importlib as _importlib
import os as _os
import sys as _sys

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

# Public name -> the module that defines it, in data-flow order.
_EXPORTS = {
    "Schema": "schema", "Categorical": "schema", "Numeric": "schema",
    "MultiCategorical": "schema", "DenseNumeric": "schema",
    "StaticTopK": "selection", "MixedDimension": "selection", "AdaFS": "selection", "AEFS": "selection",
    "BACKBONES": "builder", "build_model": "builder", "default_compile": "builder", "xla_choice": "builder",
    "register_backbone": "builder",
    "CTRModel": "model",
    "FieldSelectionFrequency": "callbacks", "TrainingThroughput": "callbacks",
    "selection_frequency": "callbacks",
    "activated_embedding_parameters": "efficiency", "model_costs": "efficiency",
    "memory_plan": "memory",
    "example_feature_spec": "schema",
    "export": "serving", "inference_model": "serving", "saved_model_ops": "serving", "served_graph": "serving",
    "compare": "comparison", "rank_fields": "comparison",
    "load_model": "files",
}
# (No submodule shares a name with a function here: importing it would
# replace the package attribute.)
_SUBMODULES = ("layers", "datasets", "distributed", "experimental", "importance", "metrics", "ops",
               "optimizers", "selection", "callbacks")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name):
    if name in _SUBMODULES:
        value = _importlib.import_module(f"{__name__}.{name}")
    elif name in _EXPORTS:
        value = getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
    else:
        raise AttributeError(f"module 'aefs_keras' has no attribute {name!r}")
    if "keras" in _sys.modules:
        _register_layers()
    return value


def __dir__():
    return __all__


_registered = False
# Every module that registers a Keras-serializable class (tests/test_package.py
# checks this list against the source).
_SERIALIZABLE = ("layers", "model", "experimental", "optimizers")


def _register_layers():
    """Import every serializable class, so `keras.models.load_model` finds them."""
    global _registered
    if not _registered:
        _registered = True
        for module in _SERIALIZABLE:
            try:
                _importlib.import_module(f"{__name__}.{module}")
            except ImportError:
                if module != "experimental":  # the core stands without the research variants
                    raise


class _AfterKerasImport:
    """A meta-path finder that registers our layers once `keras` is imported.

    Keras finds a custom class on load only if it was registered, and a user
    may `import aefs_keras` and then load a `.keras` file with Keras alone.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _sys.meta_path.remove(self)
        spec = _importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            # Not while one of our modules is half-imported (it imported
            # keras): registering would re-enter it. Such a module imports
            # the layers itself.
            if not any(getattr(getattr(m, "__spec__", None), "_initializing", False)
                       for n, m in list(_sys.modules.items()) if n.startswith(__name__ + ".")):
                _register_layers()

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in _sys.modules:
    _register_layers()
else:
    import importlib.util  # noqa: F401  (for _AfterKerasImport)

    _sys.meta_path.insert(0, _AfterKerasImport())
