"""build_model: one call from a schema to a trainable CTR model.

The graph follows the data: raw features -> FieldIds -> (selector) ->
embeddings -> backbone -> probability (-> alignment losses for AEFS).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras

from aefs_keras import layers as L
from aefs_keras.memory import memory_plan
from aefs_keras.model import CTRModel
from aefs_keras.schema import Schema, as_schema
from aefs_keras.selection import AdaFS, MixedDimension, as_selection

BACKBONES = {
    "dnn": L.DNN,
    "deepfm": L.DeepFM,
    "dcn": L.DCN,
    "wide_deep": L.WideDeep,
    "mlcc": L.MLCCNet,
    "mc_mlcc": L.MLCCNet,
}
# Backbone options implied by the name (the user's backbone_options win).
_BACKBONE_DEFAULTS = {"mc_mlcc": {"channels": 4}}
# The auxiliary head is a small copy of the backbone (authors: MLP [16, 8]).
_AUX_OPTIONS = {
    "dcn": {"num_cross_layers": 1},
    "mlcc": {"channels": 1, "heads": 2, "output_width": 4, "num_blocks": 1},
    "mc_mlcc": {"channels": 1, "heads": 2, "output_width": 4, "num_blocks": 1},
}


def register_backbone(name: str, cls) -> None:
    """Make a backbone layer class available to `build_model(backbone=name)`."""
    BACKBONES[name] = cls


# Tests set this to build the scattered form of a selecting model, the
# reference that the compact fast path must reproduce exactly.
_SCATTERED_REFERENCE = False


def _kept(values, indices, weights):
    """(B, F, d) -> the kept fields' rows (B, k, d), scaled by their weights."""
    rows = keras.ops.take_along_axis(values, keras.ops.expand_dims(indices, -1), axis=1)
    return rows * keras.ops.expand_dims(weights, -1)


def _sigmoid(name):
    return keras.layers.Activation("sigmoid", name=name)


def build_model(
    schema: Schema | dict | str,
    backbone: str = "deepfm",
    selection: str | AdaFS | MixedDimension | None = None,
    *,
    d_main: int = 32,
    hidden_units: Sequence[int] = (400, 400, 400),
    dropout: float = 0.0,
    backbone_options: dict[str, Any] | None = None,
    embeddings_initializer="uniform",
    name: str | None = None,
    memory_check: str | None = "adam",
    **selection_options,
) -> CTRModel:
    """Builds a CTR model whose output is the main click probability (B, 1).

    Args:
        schema: the feature schema (a `Schema`, its config or JSON).
        backbone: "deepfm" (default), "dcn", "wide_deep", "dnn", "mlcc",
            "mc_mlcc" (MLCC with 4 channels), or one added with
            `register_backbone`.
        selection: None (all fields); a `StaticTopK` object (the same k
            fields for every example, the rest not read); a
            `MixedDimension` object (the same k fields wide, the rest
            narrow); an `AdaFS` object (late adaptive: all fields looked up,
            hard top-k gate) or an `AEFS` object (early adaptive: an
            auxiliary selector picks k fields, only those are looked up);
            "static", "mixed_dimension", "adafs" and "aefs" stand for them.
        d_main: main embedding width.
        hidden_units, dropout: the backbone MLP.
        backbone_options: extra arguments of the backbone layer, e.g.
            `{"num_cross_layers": 2, "structure": "parallel"}` for DCN.
        embeddings_initializer: initializer of the embedding tables.
        name: model name.
        memory_check: the optimizer whose state to plan for ("adam",
            "lazy_adam", "rowwise_adagrad", "sgd"): the tables and that
            state must fit in the memory available, else MemoryError before
            anything is allocated (see `aefs_keras.memory`). None skips it.
        **selection_options: with a selection named by its string, options
            of that method (`k=3`, `warmup_steps=100`, ...; see `StaticTopK`,
            `MixedDimension`, `AdaFS` and `AEFS`). One that does not apply
            raises ValueError naming it.

    Example:

    >>> from aefs_keras import AEFS, Schema, Categorical, build_model
    >>> schema = Schema([Categorical(f"c{i}", vocabulary_size=100) for i in range(6)])
    >>> model = build_model(schema, "deepfm", AEFS(k=3), hidden_units=[16])
    >>> model.activated_embedding_parameters()  # 6*4 aux + 3*32 main + 6*1 linear (mixed resolution)
    126
    >>> build_model(schema, "deepfm", AEFS(k=3, resolution="single"), hidden_units=[16]).activated_embedding_parameters()
    123
    >>> build_model(schema, "deepfm", "mixed_dimension", fields=["c0", "c1", "c2"]).activated_embedding_parameters()  # 3*32 + 3*4 + 6*1
    114
    >>> build_model(schema, "deepfm", "aefs", k=3, hidden_units=[16]).count_params() == model.count_params()
    True
    """
    schema = as_schema(schema)
    if backbone not in BACKBONES:
        raise ValueError(
            f"`backbone` must be one of {sorted(BACKBONES)}. Received: backbone={backbone!r}"
        )
    sel = as_selection(selection, selection_options)
    aux_backbone = getattr(sel, "aux_backbone", None)
    if aux_backbone is not None and aux_backbone not in BACKBONES:
        raise ValueError(
            f"`aux_backbone` must be None or one of {sorted(BACKBONES)}. "
            f"Received: aux_backbone={aux_backbone!r}"
        )
    if isinstance(sel, MixedDimension):
        return _build_static(schema, backbone, sel, d_main, hidden_units, dropout, backbone_options,
                             embeddings_initializer, name, memory_check)
    num_fields = schema.num_fields
    k = sel.resolve_k(num_fields) if sel is not None else None
    sizes = schema.field_sizes
    layout = {k: v for k, v in schema.table_layout().items() if k != "field_sizes"}
    # Per-field widths apply to the main tables (the linear and auxiliary ones have their own width).
    main_layout = {**layout, "field_dims": schema.field_dims} if schema.field_dims else layout
    backbone_cls = BACKBONES[backbone]
    options = {**_BACKBONE_DEFAULTS.get(backbone, {}), **(backbone_options or {})}
    uses_linear = getattr(backbone_cls, "uses_linear", False)
    if memory_check is not None:
        # Before any table exists: refuse rather than be killed mid-allocation.
        memory_plan(schema, d_main, getattr(sel, "d_aux", 4), sel and sel.kind, uses_linear,
                    memory_check).check()

    # Backbones that take the kept fields compactly get them so (the fast
    # path: no zero-filled (B, F, d) tensor outside the first layer's
    # forward matmul); `_SCATTERED_REFERENCE` builds the scattered form the
    # tests compare it with.
    compact = (sel is not None and getattr(backbone_cls, "supports_compact", False)
               and not _SCATTERED_REFERENCE)
    if compact:
        options.setdefault("num_fields", num_fields)

    inputs = schema.keras_inputs()
    ids = L.FieldIds(schema, name="field_ids")(inputs)
    main_backbone = backbone_cls(
        hidden_units=hidden_units, dropout=dropout, name="backbone", **options
    )
    model_name = name or f"{backbone}_{sel.kind if sel is not None else 'all'}"

    if sel is None or sel.kind == "adafs":
        emb = L.FieldEmbedding(sizes, d_main, embeddings_initializer=embeddings_initializer,
                               name="main_embedding", **main_layout)(ids)
        linear = None
        if uses_linear:
            linear = L.FieldEmbedding(sizes, 1, embeddings_initializer="zeros",
                                      name="linear_embedding", **layout)(ids)
        kept = {}
        if sel is not None:
            gate = L.AdaptiveFieldGate(num_fields, k=k, controller=sel.controller,
                                       dropout=sel.dropout, reweight=sel.reweight,
                                       weight_scale=sel.weight_scale,
                                       output_layer=sel.output_layer, name="gate")(emb)
            if compact:
                kept = {"indices": gate["indices"]}
                emb = _kept(emb, gate["indices"], gate["weights"])
                if linear is not None:
                    linear = _kept(linear, gate["indices"], gate["weights"])
            else:
                emb = gate["embeddings"]
                if linear is not None:
                    linear = linear * keras.ops.expand_dims(gate["mask"], -1)
        logit = main_backbone(emb, linear, **kept) if linear is not None else main_backbone(emb, **kept)
        return CTRModel(inputs, _sigmoid("probability")(logit), schema=schema, name=model_name)

    selected = sel.selector(sizes, k, embeddings_initializer, name="selector", **layout)(ids)
    # The selector scales `weights` by its weight_scale already.
    main_weights = sel.main_weights(selected, "main_weights")
    warmup = ()
    if sel.warmup_steps:
        # While warming, the selector's mask is every field's soft score
        # (times F under "mean", as the kept weights are times k).
        soft = selected["mask"] * float(num_fields) if sel.weight_scale == "mean" else selected["mask"]
        warmup = (sel.main_weights({"weights": soft, "indices": None}, "warmup_weights"), selected["warming"])
    indices = read = selected["indices"]
    if compact:
        if warmup:
            indices, main_weights = L.WarmupFields(name="warmup_fields")(indices, main_weights, *warmup)
        lookup = (ids, indices, main_weights)
        read = indices
    else:
        lookup = (ids, indices, main_weights, *warmup)
        if warmup:  # the fields read while warming (all F): a fill goes to none of them
            read, _ = L.WarmupFields(name="warmup_fields")(indices, main_weights, *warmup)
    mode = "compact" if compact else "scattered"
    emb = L.ConditionalEmbedding(sizes, d_main, output_mode=mode,
                                 embeddings_initializer=embeddings_initializer,
                                 name="main_embedding", **main_layout)(*lookup)
    linear = sel.linear_terms(sizes, ids, lookup, mode, **layout) if uses_linear else None
    kept = {"indices": indices} if compact else {}
    main_emb, main_linear, main_kept = sel.backbone_inputs(
        emb, linear, read, compact, num_fields, aux=selected["embeddings"],
        factored_fill=compact and getattr(backbone_cls, "supports_factored_fill", False))
    logit = (main_backbone(main_emb, main_linear, **main_kept) if main_linear is not None
             else main_backbone(main_emb, **main_kept))
    p_main = _sigmoid("main_probability")(logit)

    if sel.aux_backbone is None:  # a small copy of the main backbone
        aux_cls = backbone_cls
        aux_options = {**options, **_AUX_OPTIONS.get(backbone, {})}
        aux_options.pop("num_fields", None)
    else:
        aux_cls = BACKBONES[sel.aux_backbone]
        aux_options = {**_BACKBONE_DEFAULTS.get(sel.aux_backbone, {}),
                       **_AUX_OPTIONS.get(sel.aux_backbone, {})}
    aux_head = aux_cls(hidden_units=sel.aux_hidden_units, dropout=0.0, name="aux_backbone",
                       **aux_options)
    p_aux = _sigmoid("aux_probability")(aux_head(sel.aux_embeddings(selected)))
    p_out = L.AlignmentLoss(sel.embedding_alignment, sel.prediction_alignment, kind=sel.alignment,
                            name="alignment")({
        "aux_embeddings": selected["embeddings"],
        "main_embeddings": emb,
        "mask": selected["mask"],
        "aux_probability": p_aux,
        "main_probability": p_main,
        **kept,
    })
    return CTRModel(inputs, {"probability": p_out, "aux_probability": p_aux}, schema=schema,
                    aux_loss_weight=sel.aux_loss_weight, name=model_name)


def _build_static(schema, backbone, sel, d_main, hidden_units, dropout, backbone_options,
                  embeddings_initializer, name, memory_check):
    """A static selection (`StaticTopK`, `MixedDimension`): one field layout
    for every example, so no selector: the widths are the tables'."""
    dims = sel.field_dims(schema.names, d_main, schema.field_dims)
    sizes = schema.field_sizes
    layout = {k: v for k, v in schema.table_layout().items() if k != "field_sizes"}
    backbone_cls = BACKBONES[backbone]
    options = {**_BACKBONE_DEFAULTS.get(backbone, {}), **(backbone_options or {})}
    uses_linear = getattr(backbone_cls, "uses_linear", False)
    if memory_check is not None:
        memory_plan(schema, d_main, 4, None, uses_linear, memory_check, field_dims=dims).check()
    # Mixed widths go to the backbone as groups where it takes them (each
    # field read at its width), else projected to d_main.
    mixed = len({d for d in dims if d > 0}) > 1
    groups = mixed and getattr(backbone_cls, "supports_mixed_widths", False)
    inputs = schema.keras_inputs()
    ids = L.FieldIds(schema, name="field_ids")(inputs)
    emb = L.FieldEmbedding(sizes, d_main, embeddings_initializer=embeddings_initializer, field_dims=dims,
                           output_mode="groups" if groups else "fields", name="main_embedding", **layout)(ids)
    main_backbone = backbone_cls(hidden_units=hidden_units, dropout=dropout, name="backbone", **options)
    if uses_linear:  # the first-order weight of every field read
        linear = L.FieldEmbedding(sizes, 1, embeddings_initializer="zeros", field_dims=[min(d, 1) for d in dims],
                                  name="linear_embedding", **layout)(ids)
        logit = main_backbone(emb, linear)
    else:
        logit = main_backbone(emb)
    return CTRModel(inputs, _sigmoid("probability")(logit), schema=schema, name=name or f"{backbone}_{sel.kind}")


def default_compile(model: keras.Model, learning_rate: float = 1e-3, optimizer=None,
                    jit_compile="auto", **kwargs) -> keras.Model:
    """Adam (or `optimizer`, e.g. `aefs_keras.optimizers.SparseAdam`) +
    binary cross-entropy + AUC and log-loss metrics.

    `jit_compile="auto"` compiles the training step with XLA where that was
    measured faster with the same results on CPU (`xla_choice`: no per-row
    selector and Keras' Adam; Keras' own "auto" uses XLA on GPUs only).
    True or False as for `keras.Model.compile`. Serving exports never use XLA either way.
    """
    optimizer = optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate)
    if jit_compile == "auto":
        jit_compile = xla_choice(model, optimizer, run_eagerly=bool(kwargs.get("run_eagerly")))[0]
    model.compile(
        optimizer=optimizer,
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"),
                 keras.metrics.BinaryCrossentropy(name="logloss")],
        jit_compile=jit_compile,
        **kwargs,
    )
    return model


def xla_choice(model: keras.Model, optimizer, run_eagerly: bool = False) -> tuple[bool, str]:
    """Whether `default_compile` trains `model` with XLA, and why.

    Yes for Keras' Adam on a model without a per-row selector whose layers
    all compile, outside a distribution strategy: no selection and
    `MixedDimension` trained at 1.25-1.72x the examples/s of the plain step
    on CPU, with the same losses (docs/scale.md, "XLA in training"). No
    with AEFS or AdaFS (0.93x at the grid's size, 1.4-1.5x only with
    10^5 ids per field: pass `jit_compile=True` there), with `SparseAdam`
    (0.2-0.8x of the plain step), with a layer XLA cannot compile (the
    string vocabulary's `StringLookup`),
    under a distribution strategy (not measured), when running eagerly, or
    with the environment variable `AEFS_KERAS_XLA=0` (the test suite sets it:
    most tests train a few steps, where XLA's compile costs more than it
    saves).
    """
    import os

    import tensorflow as tf

    from aefs_keras.optimizers import SparseAdam
    from aefs_keras.serving import selector_of

    if os.environ.get("AEFS_KERAS_XLA") == "0":
        return False, "AEFS_KERAS_XLA=0"
    if keras.backend.backend() != "tensorflow":
        return False, f"the {keras.backend.backend()} backend was not measured"
    if run_eagerly:
        return False, "run_eagerly=True"
    if isinstance(optimizer, SparseAdam):
        return False, "SparseAdam's row update ran at 0.2-0.8x under XLA"
    if type(optimizer) is not keras.optimizers.Adam:
        return False, f"only Keras' Adam was measured under XLA, not {type(optimizer).__name__}"
    if selector_of(model) is not None:
        return False, "a per-row selector ran at 0.93x under XLA at the grid's size (jit_compile=True for big tables)"
    blocking = [layer.name for layer in model._flatten_layers() if not getattr(layer, "supports_jit", True)]
    if blocking:
        return False, f"layer {blocking[0]!r} cannot be compiled by XLA"
    if tf.distribute.has_strategy():
        return False, "a distribution strategy (XLA with it was not measured)"
    return True, "Keras' Adam, no per-row selector, every layer compiles"
