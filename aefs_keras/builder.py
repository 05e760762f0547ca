"""build_model: one call from a schema to a trainable CTR model.

The graph follows the data: raw features -> FieldIds -> (selector) ->
embeddings -> backbone -> probability (-> alignment losses for AEFS).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from aefs_keras import layers as L
from aefs_keras.memory import memory_plan
from aefs_keras.model import CTRModel
from aefs_keras.ops import check_weight_scale, resolve_k
from aefs_keras.schema import Schema, as_schema

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
SELECTIONS = (None, "adafs", "aefs")
MAIN_WEIGHTINGS = ("scaled", "straight_through")
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
    selection: str | None = None,
    *,
    k: int | None = None,
    k_ratio: float | None = None,
    d_main: int = 32,
    d_aux: int = 4,
    controller: str = "adafs",
    hidden_units: Sequence[int] = (400, 400, 400),
    dropout: float = 0.0,
    backbone_options: dict[str, Any] | None = None,
    aux_hidden_units: Sequence[int] = (16, 8),
    aux_backbone: str | None = None,
    aux_loss_weight: float = 1.0,
    embedding_alignment: float = 0.3,
    prediction_alignment: float = 0.3,
    alignment: str = "mse",
    reweight: bool = True,
    weight_scale: str = "mean",
    controller_output_layer: bool = True,
    controller_dropout: float = 0.2,
    embeddings_initializer="uniform",
    soft_gradient: bool = False,
    main_weighting: str = "scaled",
    aux_input: str = "selected",
    exploration: float = 0.0,
    score_decay: float = 0.0,
    warmup_steps: int = 0,
    field_prior: Sequence[float] | None = None,
    name: str | None = None,
    memory_check: str | None = "adam",
) -> CTRModel:
    """Builds a CTR model whose output is the main click probability (B, 1).

    Args:
        schema: the feature schema (a `Schema`, its config or JSON).
        backbone: "deepfm" (default), "dcn", "wide_deep", "dnn", "mlcc",
            "mc_mlcc" (MLCC with 4 channels), or one added with
            `register_backbone`.
        selection: None (all fields), "adafs" (late adaptive: all fields
            looked up, hard top-k gate) or "aefs" (early adaptive: an
            auxiliary selector picks k fields, only those are looked up).
        k, k_ratio: fields kept per example for "adafs"/"aefs" (default
            k_ratio 0.5, i.e. floor(F / 2)).
        d_main: main embedding width.
        d_aux: auxiliary embedding width (AEFS).
        controller: "adafs" or "mvfs" controller for the selector.
        hidden_units, dropout: the backbone MLP.
        backbone_options: extra arguments of the backbone layer, e.g.
            `{"num_cross_layers": 2, "structure": "parallel"}` for DCN.
        aux_hidden_units: MLP of AEFS's small prediction head.
        aux_backbone: AEFS: the small head's type: None (default, the
            paper: a small copy of `backbone`) or a backbone name, e.g.
            "dnn" (an MLP alone; see docs/aefs.md for why that can keep the
            selection away from noise fields).
        aux_loss_weight: weight of the auxiliary BCE (lambda_a).
        embedding_alignment, prediction_alignment, alignment: weights and
            kind ("mse", "kl", "huber") of `AlignmentLoss`.
        reweight: renormalise the kept scores to sum to 1.
        weight_scale: how the kept fields' main embeddings are scaled.
            "mean" (default): by the re-weighted scores times k, so they
            average 1; "sum": by the scores summing to 1 (the paper's form,
            which shrinks every kept embedding by about 1/k). For AEFS only
            the main lookups are rescaled; the selector's mask, the
            auxiliary head and the alignment keep the paper's weights.
        controller_output_layer: linear layer before the controller's
            softmax (False: the paper's exact controller).
        controller_dropout: dropout inside the controller.
        embeddings_initializer: initializer of the embedding tables.
        soft_gradient: AEFS: the auxiliary path's gradient also reaches the
            scores of dropped fields (see `AuxiliarySelector`).
        main_weighting: AEFS: "scaled" (default) multiplies the kept main
            embeddings by their weights; "straight_through" passes them
            unscaled in the forward pass and differentiates as if scaled,
            so the weights cannot carry information about other fields into
            the main model.
        aux_input: AEFS: what the auxiliary head sees: "selected" (default,
            the paper: the kept fields' auxiliary embeddings, scaled by their
            weights) or "soft" (all fields, scaled by the soft scores).
        exploration: AEFS: Gumbel noise scale of the selector's training-time
            top-k (see `AuxiliarySelector`).
        score_decay: AEFS: L2 penalty on the controller's output layer (see
            `SelectionController`).
        warmup_steps: AEFS: training steps of soft selection over all fields
            (all looked up, each scaled by its score) before the hard top-k
            (see `AuxiliarySelector`; default 0, the paper).
        field_prior: AEFS: F numbers, the controller's initial output bias,
            e.g. `importance.importance_prior(importance.permutation_importance(
            no_selection_model, valid_x, valid_y))` (default None: zeros).
        name: model name.
        memory_check: the optimizer whose state to plan for ("adam",
            "lazy_adam", "rowwise_adagrad", "sgd"): the tables and that
            state must fit in the memory available, else MemoryError before
            anything is allocated (see `aefs_keras.memory`). None skips it.

    Example:

    >>> from aefs_keras import Schema, Categorical, build_model
    >>> schema = Schema([Categorical(f"c{i}", vocabulary_size=100) for i in range(6)])
    >>> model = build_model(schema, "deepfm", selection="aefs", k=3, hidden_units=[16])
    >>> model.activated_embedding_parameters()  # 6*4 aux + 3*32 main + 3*1 linear
    123
    """
    schema = as_schema(schema)
    if backbone not in BACKBONES:
        raise ValueError(
            f"`backbone` must be one of {sorted(BACKBONES)}. Received: backbone={backbone!r}"
        )
    if selection not in SELECTIONS:
        raise ValueError(
            f"`selection` must be one of {list(SELECTIONS)}. Received: selection={selection!r}"
        )
    num_fields = schema.num_fields
    check_weight_scale(weight_scale)
    if aux_input not in ("selected", "soft"):
        raise ValueError(
            f"`aux_input` must be 'selected' or 'soft'. Received: aux_input={aux_input!r}"
        )
    if main_weighting not in MAIN_WEIGHTINGS:
        raise ValueError(
            f"`main_weighting` must be one of {list(MAIN_WEIGHTINGS)}. "
            f"Received: main_weighting={main_weighting!r}"
        )
    if aux_backbone is not None and aux_backbone not in BACKBONES:
        raise ValueError(
            f"`aux_backbone` must be None or one of {sorted(BACKBONES)}. "
            f"Received: aux_backbone={aux_backbone!r}"
        )
    if selection is not None:
        k = resolve_k(num_fields, k, k_ratio)
    elif k is not None or k_ratio is not None:
        raise ValueError(
            f"`k`/`k_ratio` apply only with a selection. Received: k={k}, "
            f"k_ratio={k_ratio}, selection=None"
        )
    sizes = schema.field_sizes
    backbone_cls = BACKBONES[backbone]
    options = {**_BACKBONE_DEFAULTS.get(backbone, {}), **(backbone_options or {})}
    uses_linear = getattr(backbone_cls, "uses_linear", False)
    if memory_check is not None:
        # Before any table exists: refuse rather than be killed mid-allocation.
        memory_plan(schema, d_main, d_aux, selection, uses_linear, memory_check).check()

    # Backbones that take the kept fields compactly get them so (the fast
    # path: no zero-filled (B, F, d) tensor outside the first layer's
    # forward matmul); `_SCATTERED_REFERENCE` builds the scattered form the
    # tests compare it with.
    compact = (selection is not None and getattr(backbone_cls, "supports_compact", False)
               and not _SCATTERED_REFERENCE)
    if compact:
        options.setdefault("num_fields", num_fields)

    inputs = schema.keras_inputs()
    ids = L.FieldIds(schema, name="field_ids")(inputs)
    main_backbone = backbone_cls(
        hidden_units=hidden_units, dropout=dropout, name="backbone", **options
    )
    outputs: Any

    if selection in (None, "adafs"):
        emb = L.FieldEmbedding(sizes, d_main, embeddings_initializer=embeddings_initializer,
                               name="main_embedding")(ids)
        linear = None
        if uses_linear:
            linear = L.FieldEmbedding(sizes, 1, embeddings_initializer="zeros",
                                      name="linear_embedding")(ids)
        kept = {}
        if selection == "adafs":
            gate = L.AdaptiveFieldGate(num_fields, k=k, controller=controller,
                                       dropout=controller_dropout, reweight=reweight,
                                       weight_scale=weight_scale,
                                       output_layer=controller_output_layer, name="gate")(emb)
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
        outputs = _sigmoid("probability")(logit)
    else:
        selected = L.AuxiliarySelector(
            sizes, k=k, d_aux=d_aux, controller=controller, dropout=controller_dropout,
            reweight=reweight, output_layer=controller_output_layer,
            soft_gradient=soft_gradient, exploration=exploration, score_decay=score_decay,
            warmup_steps=warmup_steps, field_prior=field_prior, name="selector",
        )(ids)
        main_weights = selected["weights"]
        if weight_scale == "mean":
            main_weights = main_weights * float(k)
        if main_weighting == "straight_through":
            main_weights = L.StraightThroughOnes(name="main_weights")(main_weights)
        warmup = ()
        if warmup_steps:
            # While warming, the selector's mask is every field's soft score
            # (times F under "mean", as the kept weights are times k).
            soft = selected["mask"] * float(num_fields) if weight_scale == "mean" else selected["mask"]
            if main_weighting == "straight_through":
                soft = L.StraightThroughOnes(name="warmup_weights")(soft)
            warmup = (soft, selected["warming"])
        indices = selected["indices"]
        if compact:
            if warmup:
                indices, main_weights = L.WarmupFields(name="warmup_fields")(
                    indices, main_weights, *warmup)
            lookup = (ids, indices, main_weights)
        else:
            lookup = (ids, indices, main_weights, *warmup)
        mode = "compact" if compact else "scattered"
        emb = L.ConditionalEmbedding(sizes, d_main, output_mode=mode,
                                     embeddings_initializer=embeddings_initializer,
                                     name="main_embedding")(*lookup)
        linear = None
        if uses_linear:
            linear = L.ConditionalEmbedding(sizes, 1, output_mode=mode, embeddings_initializer="zeros",
                                            name="linear_embedding")(*lookup)
        kept = {"indices": indices} if compact else {}
        logit = main_backbone(emb, linear, **kept) if linear is not None else main_backbone(emb, **kept)
        p_main = _sigmoid("main_probability")(logit)

        if aux_backbone is None:  # a small copy of the main backbone
            aux_cls = backbone_cls
            aux_options = {**options, **_AUX_OPTIONS.get(backbone, {})}
            aux_options.pop("num_fields", None)
        else:
            aux_cls = BACKBONES[aux_backbone]
            aux_options = {**_BACKBONE_DEFAULTS.get(aux_backbone, {}), **_AUX_OPTIONS.get(aux_backbone, {})}
        aux_head = aux_cls(hidden_units=aux_hidden_units, dropout=0.0, name="aux_backbone", **aux_options)
        if aux_input == "soft":
            # Every field, scaled by its soft score (times F, so the scales
            # average 1): each score is trained on every step.
            soft = selected["scores"] / keras.ops.sum(selected["scores"], axis=-1, keepdims=True)
            aux_emb = selected["embeddings"] * keras.ops.expand_dims(soft * float(num_fields), -1)
        else:
            aux_emb = selected["embeddings"] * keras.ops.expand_dims(selected["mask"], -1)
        p_aux = _sigmoid("aux_probability")(aux_head(aux_emb))
        p_out = L.AlignmentLoss(embedding_alignment, prediction_alignment, kind=alignment,
                                name="alignment")({
            "aux_embeddings": selected["embeddings"],
            "main_embeddings": emb,
            "mask": selected["mask"],
            "aux_probability": p_aux,
            "main_probability": p_main,
            **kept,
        })
        outputs = {"probability": p_out, "aux_probability": p_aux}

    return CTRModel(inputs, outputs, schema=schema, aux_loss_weight=aux_loss_weight,
                    name=name or f"{backbone}_{selection or 'all'}")


def default_compile(model: keras.Model, learning_rate: float = 1e-3, optimizer=None,
                    **kwargs) -> keras.Model:
    """Adam (or `optimizer`, e.g. `aefs_keras.optimizers.SparseAdam`) +
    binary cross-entropy + AUC and log-loss metrics."""
    model.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"),
                 keras.metrics.BinaryCrossentropy(name="logloss")],
        **kwargs,
    )
    return model
