"""Export for TF Serving: raw features in, named outputs out, written atomically."""

from __future__ import annotations

import os
import shutil
import sys
import uuid

import keras
import tensorflow as tf

from aefs_keras.layers.adaptive_field_gate import AdaptiveFieldGate
from aefs_keras.layers.alignment_loss import AlignmentLoss
from aefs_keras.layers.auxiliary_selector import AuxiliarySelector
from aefs_keras.schema import dense_features, example_feature_spec


def selector_of(model: keras.Model, required: str | None = None):
    """The model's one selecting layer (`AuxiliarySelector` or
    `AdaptiveFieldGate`), or None; `required` names the caller in the
    error raised when there is not exactly one."""
    found = [layer for layer in model.layers if isinstance(layer, (AuxiliarySelector, AdaptiveFieldGate))]
    if len(found) > 1 or (required and not found):
        raise ValueError(f"{required or 'inference_model'} needs a model with exactly one AuxiliarySelector "
                         f"or AdaptiveFieldGate. Found {len(found)} in model {model.name!r}")
    return found[0] if found else None


def inference_model(model: keras.Model) -> keras.Model:
    """The sub-graph serving needs: raw features -> `probability` (B, 1),
    plus, for selecting models, `selected_fields` (B, k) and, when the
    model has a schema, `selected_field_names` (B, k), the same as names.

    Found by structure, not by layer names: in a model with an
    `AlignmentLoss` (AEFS, built or composed by hand) the served
    probability is the one that layer aligns the small head with, so the
    auxiliary head and the alignment are left out and only the selector and
    the main model run; otherwise it is the model's `probability` output.
    """
    aligners = [layer for layer in model.layers if isinstance(layer, AlignmentLoss)]
    if len(aligners) > 1:
        raise ValueError(f"inference_model expects at most one AlignmentLoss layer. Found: {len(aligners)}")
    if aligners:
        probability = aligners[0].main_probability_input()
    else:
        out = model.output
        probability = out["probability"] if isinstance(out, dict) else out
    outputs = {"probability": probability}
    selector = selector_of(model)
    if selector is not None:
        # A dict-output layer's `.output` is flattened in sorted-key order.
        flat = selector.output
        keys = sorted(selector.OUTPUT_KEYS)
        outputs["selected_fields"] = flat[keys.index("indices")] if isinstance(flat, list) else flat["indices"]
        schema = getattr(model, "schema", None)
        if schema is not None:
            outputs["selected_field_names"] = _FieldNames(schema.names)(outputs["selected_fields"])
    return keras.Model(model.input, outputs, name=f"{model.name}_serving")


def served_graph(model: keras.Model, specialize: bool = True):
    """(what `export` serves, why it is not specialised or ""): the
    specialised graph of AEFS at mixed resolution
    (`aefs_keras.mixed_serving`) where `specialize` and the model has that
    form, else `inference_model(model)`."""
    if specialize:
        from aefs_keras.mixed_serving import mixed_serving_plan

        plan, why = mixed_serving_plan(model)
        if plan is not None:
            return plan, ""
    else:
        why = "specialize=False"
    return inference_model(model), why


class _FieldNames(keras.layers.Layer):
    """Field indices (B, k) -> their names (B, k): what a served request
    shows of the selection, readable without the schema."""

    def __init__(self, names, **kwargs):
        super().__init__(**kwargs)
        self.names = list(names)

    def call(self, indices):
        return tf.gather(tf.constant(self.names), indices)

    def compute_output_spec(self, indices):
        return keras.KerasTensor(indices.shape, "string")


def _input_signature(model: keras.Model):
    inputs = model.input
    if not isinstance(inputs, dict):
        raise ValueError(
            "Export needs a model whose inputs are a dict of named features "
            f"(as `build_model` makes). Received inputs: {type(inputs).__name__}"
        )
    return {
        name: tf.TensorSpec(shape=t.shape, dtype=t.dtype, name=name)
        for name, t in inputs.items()
    }


REGRESS_SIGNATURE = "regress"
_REGRESS_METHOD = "tensorflow/serving/regress"


def _recover_interrupted(model_dir: str) -> None:
    """What an export killed midway left in `model_dir`, said and mended:
    a half-written `.tmp-*` directory is removed; a version an interrupted
    overwrite had moved aside (`.old-V-*` without `V`) is put back."""
    from aefs_keras.files import _pid_alive

    for entry in sorted(os.listdir(model_dir)):
        parts = entry.split("-")
        if not entry.startswith((".tmp-", ".old-")) or len(parts) < 4 or not parts[2].isdigit():
            continue
        if _pid_alive(int(parts[2])):
            continue  # another export, still running
        path = os.path.join(model_dir, entry)
        version = os.path.join(model_dir, parts[1])
        if entry.startswith(".old-") and not os.path.exists(version):
            os.rename(path, version)
            print(f"Restored {version}: an interrupted export had moved it aside", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)
            print(f"Removed {path}: what an interrupted export left (no version was touched)", file=sys.stderr)


def _write_saved_model(serving: keras.Model, signature, path: str, schema=None) -> None:
    archive = keras.export.ExportArchive()
    archive.track(serving)

    def serve(features):
        return serving(features, training=False)

    # The first endpoint added becomes `serving_default`.
    archive.add_endpoint("serving_default", serve, input_signature=[signature])
    if schema is not None:
        spec = example_feature_spec(schema)

        def regress(inputs):  # the argument name is the Regress API's input key
            features = dense_features(tf.io.parse_example(inputs, spec), schema)
            probability = serving(features, training=False)["probability"]
            return {"outputs": tf.reshape(probability, [-1])}

        archive.add_endpoint(
            REGRESS_SIGNATURE, regress,
            input_signature=[tf.TensorSpec([None], tf.string, name="inputs")],
        )
    # Keras (3.15) saves each tracked Keras variable twice, under `variables`
    # and again as the TF variable the endpoints capture: an export twice
    # the size of its tables. The endpoints keep what they use; the lists
    # only serve `loaded.variables` in Python, which serving never reads.
    archive._tf_trackable.variables = []
    archive._tf_trackable.trainable_variables = []
    archive._tf_trackable.non_trainable_variables = []
    archive.write_out(path, verbose=False)
    if schema is not None:
        _set_method_name(path, REGRESS_SIGNATURE, _REGRESS_METHOD)


def _set_method_name(path: str, signature_key: str, method: str) -> None:
    # TF2 writes every signature as `predict`; TF Serving's Regress API
    # wants `regress` when its method-name check is on, so mark it.
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = os.path.join(path, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(pb_path, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if signature_key in meta_graph.signature_def:
            meta_graph.signature_def[signature_key].method_name = method
    with open(pb_path, "wb") as f:
        f.write(proto.SerializeToString())


def saved_model_ops(path: str) -> set[str]:
    """Every op type in a SavedModel: its graph and all library functions."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def _next_version(model_dir: str) -> int:
    versions = [int(n) for n in os.listdir(model_dir) if n.isdigit()] if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def export(
    model: keras.Model,
    base_dir: str,
    name: str,
    version: int | None = None,
    overwrite: bool = False,
    example_signature: bool | None = None,
    specialize: bool = True,
) -> str:
    """Writes `base_dir/name/version/`, a SavedModel TF Serving can load.

    The `serving_default` signature takes raw features by name (batch
    first) and returns `probability` and, for selecting models,
    `selected_fields`. A `regress` signature parses serialized
    `tf.Example`s for TF Serving's Regress API. The export is written to a hidden temporary
    directory beside the target and renamed into place, so TF Serving never
    sees a half-written version.

    Args:
        model: a model from `build_model` (or any CTRModel with dict inputs).
        base_dir: the TF Serving model base path.
        name: model name (a sub-directory of `base_dir`).
        version: positive integer; default one above the highest present.
        overwrite: replace an existing version (otherwise refuse).
        example_signature: also add the `regress` signature, which takes
            serialized `tf.Example`s (input `inputs`) and returns the
            probability as `outputs`, for TF Serving's Regress API. It
            needs the model's schema; the default adds it when the model
            carries one (`build_model`'s models do).
        specialize: serve AEFS at mixed resolution with its fixed fields
            known (`aefs_keras.mixed_serving`: the same outputs to 1e-5,
            less work per call) where the model has that form (default);
            False exports the Keras model's own inference graph.

    Returns:
        The path of the version directory.
    """
    if not isinstance(specialize, bool):
        raise ValueError(f"`specialize` must be True or False. Received: specialize={specialize!r}")
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"`name` must be a plain directory name. Received: name={name!r}")
    model_dir = os.path.join(base_dir, name)
    if version is None:
        version = _next_version(model_dir)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer. Received: version={version!r}")
    target = os.path.join(model_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Version {version} of model {name!r} already exists at {target!r}; "
            "pass overwrite=True to replace it."
        )
    schema = getattr(model, "schema", None)
    if example_signature and schema is None:
        raise ValueError(
            "`example_signature=True` needs a model with a `schema` (a CTRModel from "
            f"`build_model`). Received a {type(model).__name__} without one."
        )
    if example_signature is False:
        schema = None
    os.makedirs(model_dir, exist_ok=True)
    _recover_interrupted(model_dir)
    signature = _input_signature(model)
    serving = served_graph(model, specialize)[0]

    # TF Serving only loads all-digit directory names: a dot-name is invisible.
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _write_saved_model(serving, signature, tmp, schema)
        if os.path.exists(target):
            old = os.path.join(model_dir, f".old-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target
