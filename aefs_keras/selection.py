"""Selection methods for `build_model`: what to pass as `selection=`.

Each object takes and checks only its own options:

- `StaticTopK`: static early selection. The same k fields for every
  example (given, or the top k of an importance ranking); the others are
  never read.
- `MixedDimension`: static mixed-dimension embeddings. The same k fields
  at full width, every other field at a small width; no selector.
- `AdaFS`: late adaptive selection. Every field is looked up at full
  width, then a controller keeps each example's top-k (the baseline).
- `AEFS`: early adaptive selection. A small auxiliary model picks the top-k
  fields first, and the main model looks up only those.

The strings "static", "mixed_dimension", "adafs" and "aefs" stand for the
objects with their defaults.
Research variants that did not help (docs/aefs.md) live in
`aefs_keras.experimental`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Sequence

from aefs_keras.checks import ALIGNMENTS, check_controller, check_weight_scale, resolve_k

def _check(condition, name, value, what):
    if not condition:
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")


def _check_k(k, k_ratio):
    """`k` (a positive integer) or `k_ratio` (in (0, 1]), not both."""
    if k is not None and k_ratio is not None:
        raise ValueError(f"Give `k` or `k_ratio`, not both. Received: k={k}, k_ratio={k_ratio}")
    _check(k is None or (isinstance(k, int) and not isinstance(k, bool) and k >= 1),
           "k", k, "None or a positive integer")
    if k_ratio is not None:
        resolve_k(1, None, k_ratio)


@dataclasses.dataclass
class AdaFS:
    """Late adaptive selection (AdaFS; with `controller="mvfs"`, MvFS).

    All F fields are looked up; a controller scores them per example and
    keeps the top-k, scaled by their re-weighted scores.

    Args:
        k: fields kept per example; or give `k_ratio`.
        k_ratio: fraction of F kept when `k` is None (default 0.5).
        controller: "mlp" (AdaFS's MLP + softmax) or "mvfs" (multi-view).
        dropout: dropout inside the controller.
        reweight: renormalise the kept scores to sum to 1.
        weight_scale: "mean" (default): kept weights times k, so they
            average 1 and a kept embedding keeps its size; "sum": they sum
            to 1 (the papers' form, which shrinks each by about 1/k).
        output_layer: a linear layer before the controller's softmax
            (default True; False is the papers' exact controller).

    Example:

    >>> AdaFS(k=3)
    AdaFS(k=3, k_ratio=None, controller='mlp', dropout=0.2, reweight=True, weight_scale='mean', output_layer=True)

    Reference: Lin et al., "AdaFS: Adaptive Feature Selection in Deep
    Recommender System", KDD 2022.
    """

    k: int | None = None
    k_ratio: float | None = None
    controller: str = "mlp"
    dropout: float = 0.2
    reweight: bool = True
    weight_scale: str = "mean"
    output_layer: bool = True

    kind = "adafs"

    def __post_init__(self):
        _check_k(self.k, self.k_ratio)
        self.controller = check_controller(self.controller)
        _check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
               "dropout", self.dropout, "in [0, 1)")
        check_weight_scale(self.weight_scale)

    def resolve_k(self, num_fields: int) -> int:
        return resolve_k(num_fields, self.k, self.k_ratio)


RESOLUTIONS = ("mixed", "single")


@dataclasses.dataclass
class AEFS(AdaFS):
    """Early adaptive selection (AEFS): pick k fields, then look up only those.

    A small auxiliary model (all F fields at width `d_aux`, a controller and
    a small prediction head) picks each example's top-k fields; the main
    model looks up its embeddings for those k only. Trained with the
    auxiliary BCE and embedding and prediction alignment losses.

    At mixed resolution (the default), `keep_share` of k is the same on
    every row (ranked during `fit`, or from `importance`), the rest is
    chosen per row, the kept fields enter unscaled, and every dropped field
    reaches the backbone through a learned projection of its auxiliary
    embedding (read anyway), so no field is ever zeros; every field's
    first-order weight is read (F values per example more, with DeepFM and
    Wide&Deep). `resolution="single"` is the paper's form: all of k chosen
    per row, dropped fields zero, kept fields scaled by their scores.

    Args:
        k, k_ratio, controller, dropout, reweight, output_layer: as `AdaFS`.
        weight_scale: how the kept fields' *main* embeddings are scaled
            ("mean", default, or "sum", as `AdaFS`; single resolution only);
            the selector's mask, the auxiliary head and the alignment keep
            the paper's weights.
        d_aux: width of the auxiliary embeddings (default 4).
        aux_hidden_units: MLP of the small prediction head (default (16, 8)).
        aux_backbone: the small head's type: None (a small copy of the main
            backbone, the paper) or a backbone name, e.g. "dnn".
        aux_loss_weight: weight of the auxiliary BCE (default 1).
        embedding_alignment, prediction_alignment: weights of the two
            alignment losses (default 0.3 each).
        alignment: "mse" (default), "kl" or "huber".
        warmup_steps: training steps of soft selection over all fields (all
            looked up, each scaled by its score) before the hard top-k
            (default 0, the paper).
        field_prior: F numbers, the controller's initial output bias (see
            `aefs_keras.importance`); default None: zeros.
        resolution: "mixed" (default) or "single" (the paper's form).
        keep_share: mixed: the share of k kept on every row (default 0.75).
        importance: mixed: one number per field (larger = more important)
            that ranks the fields kept on every row, e.g. from
            `aefs_keras.rank_fields`; default None: ranked during
            `fit`, after `rank_epochs` epochs, by the model's own
            permutation importance on validation rows
            (`aefs_keras.callbacks.RankFields`, which `fit` adds).
        rank_epochs: mixed, without `importance`: epochs before the
            in-fit ranking (default 1); until then all of k is chosen per
            row.

    Example:

    >>> AEFS(k_ratio=0.3, warmup_steps=100).warmup_steps
    100
    >>> AEFS(resolution="single").keep_share is None
    True

    Reference: "Adaptive Early Feature Selection for Efficient CTR
    Prediction", arXiv 2509.12076 (IEEE TKDE 2025); mixed resolution is
    ours (docs/aefs.md, "Mixed resolution").
    """

    d_aux: int = 4
    aux_hidden_units: Sequence[int] = (16, 8)
    aux_backbone: str | None = None
    aux_loss_weight: float = 1.0
    embedding_alignment: float = 0.3
    prediction_alignment: float = 0.3
    alignment: str = "mse"
    warmup_steps: int = 0
    field_prior: Sequence[float] | None = None
    resolution: str = "mixed"
    keep_share: float | None = 0.75
    importance: Sequence[float] | None = None
    rank_epochs: int = 1

    kind = "aefs"

    def __post_init__(self):
        super().__post_init__()
        _check(isinstance(self.d_aux, int) and not isinstance(self.d_aux, bool) and self.d_aux >= 1,
               "d_aux", self.d_aux, "a positive integer")
        self.aux_hidden_units = tuple(self.aux_hidden_units)
        for name in ("aux_loss_weight", "embedding_alignment", "prediction_alignment"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
                   name, value, "a number >= 0")
        _check(self.alignment in ALIGNMENTS, "alignment", self.alignment, f"one of {ALIGNMENTS}")
        _check(isinstance(self.warmup_steps, int) and not isinstance(self.warmup_steps, bool)
               and self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "an integer >= 0")
        _check(self.resolution in RESOLUTIONS, "resolution", self.resolution, f"one of {RESOLUTIONS}")
        if self.resolution == "single":
            # keep_share's default belongs to the mixed form; the others are errors here.
            self.keep_share = None if self.keep_share == 0.75 else self.keep_share
            for name, default in (("keep_share", None), ("importance", None), ("rank_epochs", 1)):
                _check(getattr(self, name) == default, name, getattr(self, name),
                       f"left at its default with resolution='single' (it applies to resolution='mixed')")
            return
        _check(isinstance(self.keep_share, (int, float)) and not isinstance(self.keep_share, bool)
               and 0.0 <= self.keep_share <= 1.0, "keep_share", self.keep_share, "in [0, 1]")
        _check(isinstance(self.rank_epochs, int) and not isinstance(self.rank_epochs, bool)
               and self.rank_epochs >= 1, "rank_epochs", self.rank_epochs, "an integer >= 1")
        if self.importance is not None:
            self.importance = tuple(float(v) for v in self.importance)

    @property
    def mixed(self) -> bool:
        return self.resolution == "mixed"

    # The extension points of `build_model` (aefs_keras.experimental
    # overrides them); each is used by the core forms too.
    def selector(self, field_sizes, k, embeddings_initializer, name, **layout):
        """The `AuxiliarySelector` layer (`layout`: `offsets`, `bag_fields`)."""
        from aefs_keras.layers.auxiliary_selector import AuxiliarySelector

        return AuxiliarySelector(field_sizes, k=k, **self._selector_options(), **self._fixed_options(k, len(field_sizes)),
                                 **layout, embeddings_initializer=embeddings_initializer, name=name)

    def _selector_options(self):
        return dict(d_aux=self.d_aux, controller=self.controller, dropout=self.dropout,
                    reweight=self.reweight, weight_scale=self.weight_scale,
                    output_layer=self.output_layer, warmup_steps=self.warmup_steps,
                    field_prior=None if self.field_prior is None else list(self.field_prior))

    def _fixed_options(self, k, num_fields):
        """Mixed resolution: the fields kept on every row, given by
        `importance` or ranked in fit."""
        if not self.mixed:
            return {}
        m = int(round(self.keep_share * k))
        if not m:
            return {}
        if self.importance is None:
            return {"num_fixed": m, "rank_epochs": self.rank_epochs}
        if len(self.importance) != num_fields:
            raise ValueError(f"`importance` must have one number per field ({num_fields}). "
                             f"Received {len(self.importance)} numbers")
        from aefs_keras.importance import most_important

        return {"fixed_fields": most_important(self.importance, m)}

    def main_weights(self, selected, name):
        """The weights that scale the kept main embeddings (`selected`: the
        selector's outputs, or {"weights": ...} of the warm-up). Mixed: ones
        (the kept fields unscaled, and no gradient from the main loss to
        the controller)."""
        if self.mixed:
            import keras

            return keras.ops.ones_like(selected["weights"])
        return selected["weights"]

    def linear_terms(self, field_sizes, ids, lookup, output_mode, **layout):
        """The first-order weights the main model reads (backbones with a
        wide part): mixed, every field's; single, the kept fields', looked up
        as the main embeddings are (`lookup`: `ConditionalEmbedding`'s
        inputs; `ids`: every field's)."""
        if self.mixed:
            from aefs_keras.layers.field_embedding import FieldEmbedding

            return FieldEmbedding(field_sizes, 1, embeddings_initializer="zeros", name="linear_embedding",
                                  **layout)(ids)
        from aefs_keras.layers.conditional_embedding import ConditionalEmbedding

        return ConditionalEmbedding(field_sizes, 1, output_mode=output_mode, embeddings_initializer="zeros",
                                    name="linear_embedding", **layout)(*lookup)

    def backbone_inputs(self, emb, linear, indices, compact, num_fields, aux=None, factored_fill=False):
        """What the main backbone is called with -> (embeddings, linear,
        extra call arguments): the kept fields' embeddings (and linear
        terms), {"indices": ...} when compact. Mixed: every dropped field
        filled from its auxiliary embedding `aux` (B, F, d_aux), factored
        into the backbone's first layer where it takes that
        (`factored_fill`), else as a (B, F, d) tensor."""
        if not self.mixed:
            return emb, linear, ({"indices": indices} if compact else {})
        from aefs_keras.layers.dropped_field_fill import DroppedFieldFill

        if compact and factored_fill:
            fill = DroppedFieldFill(num_fields, compact=True, from_aux=True, factored=True,
                                    name="dropped_fill")(emb, indices, aux)
            return emb, linear, {"indices": indices, "fill_codes": fill["codes"], "fill_weights": fill["weights"]}
        return DroppedFieldFill(num_fields, compact=compact, from_aux=True, name="dropped_fill")(emb, indices, aux), \
            linear, {}

    def aux_embeddings(self, selected):
        """What the small head sees: the kept fields' auxiliary embeddings,
        scaled by the paper's weights."""
        import keras

        return selected["embeddings"] * keras.ops.expand_dims(selected["mask"], -1)


@dataclasses.dataclass
class MixedDimension:
    """Static mixed-dimension embeddings: k fields wide, the rest narrow.

    The k most important fields (or the `fields` given) are embedded at the
    main width on every example, every other field at `d_small`; there is
    no selector and no auxiliary head, in training or serving. Backbones
    that take mixed widths (DNN, DeepFM, DCN, Wide&Deep) read each field at
    its own width, so the first layer sees k x d_main + (F - k) x d_small
    values instead of F x d_main; the FM projects the narrow fields for its
    dot products only. Other backbones get the narrow fields projected to
    the main width. Every field's first-order weight is read.

    Args:
        k: fields at full width; or give `k_ratio` (default 0.5), or `fields`.
        k_ratio: fraction of F at full width when `k` is None.
        d_small: the other fields' width (default 4).
        fields: the wide fields, by name or position (then k = len(fields)).
        importance: one number per field, larger = more important (e.g.
            `aefs_keras.rank_fields`); the top k are wide.
            Give `fields` or `importance`.

    Example:

    >>> MixedDimension(k=2, importance=[0.1, 0.0, 0.3, 0.2]).wide_fields(["a", "b", "c", "d"])
    [2, 3]
    >>> MixedDimension(fields=["b"]).wide_fields(["a", "b", "c"])
    [1]

    Reference: mixed-dimension embeddings (Ginart et al., "Mixed Dimension
    Embeddings with Application to Memory-Efficient Recommendation
    Systems", ISIT 2021), with the widths set by field importance.
    """

    k: int | None = None
    k_ratio: float | None = None
    d_small: int = 4
    fields: Sequence[str | int] | None = None
    importance: Sequence[float] | None = None

    kind = "mixed_dimension"

    def __post_init__(self):
        _check_k(self.k, self.k_ratio)
        self._check_d_small()
        if self.fields is not None and self.importance is not None:
            raise ValueError("Give `fields` or `importance`, not both. Received: "
                             f"fields={self.fields!r}, importance={self.importance!r}")
        if self.fields is not None:
            self.fields = tuple(self.fields)
            _check(len(self.fields) > 0 and len(set(self.fields)) == len(self.fields), "fields", self.fields,
                   "distinct field names or positions, at least one")
            _check(self.k_ratio is None and (self.k is None or self.k == len(self.fields)), "k",
                   self.k if self.k is not None else self.k_ratio, f"None with `fields` (k = len(fields) = "
                   f"{len(self.fields)})")
        if self.importance is not None:
            self.importance = tuple(float(v) for v in self.importance)

    def _check_d_small(self):
        _check(isinstance(self.d_small, int) and not isinstance(self.d_small, bool) and self.d_small >= 1,
               "d_small", self.d_small, "a positive integer")

    def resolve_k(self, num_fields: int) -> int:
        if self.fields is not None:
            return len(self.fields)
        return resolve_k(num_fields, self.k, self.k_ratio)

    def wide_fields(self, names: Sequence[str]) -> list[int]:
        """The positions of the k wide (kept) fields, given the schema's
        field names in order."""
        names = list(names)
        if self.fields is not None:
            out = []
            for f in self.fields:
                if isinstance(f, str):
                    if f not in names:
                        raise ValueError(f"`fields`: {f!r} is not a field of the schema ({', '.join(names)})")
                    out.append(names.index(f))
                elif isinstance(f, int) and not isinstance(f, bool) and 0 <= f < len(names):
                    out.append(f)
                else:
                    raise ValueError(f"`fields` must hold field names or positions in [0, {len(names)}). "
                                     f"Received: {f!r}")
            if len(set(out)) != len(out):
                raise ValueError(f"`fields` names a field twice. Received: fields={self.fields!r}")
            return sorted(out)
        if self.importance is None:
            raise ValueError(f"{type(self).__name__} needs the wide fields: give `fields` (names or positions) "
                             "or `importance` (one number per field, e.g. from "
                             "`aefs_keras.rank_fields`). Received: fields=None, importance=None")
        if len(self.importance) != len(names):
            raise ValueError(f"`importance` must have one number per field ({len(names)}). "
                             f"Received {len(self.importance)} numbers")
        from aefs_keras.importance import most_important

        return list(most_important(self.importance, self.resolve_k(len(names))))

    def field_dims(self, names: Sequence[str], d_main: int, base_dims=None) -> list[int]:
        """Each field's width: the wide ones at their schema width or
        `d_main`, the others at `d_small` (0: not read)."""
        wide = set(self.wide_fields(names))
        base = list(base_dims) if base_dims else [None] * len(names)
        return [(base[f] or d_main) if f in wide else self.d_small for f in range(len(names))]


@dataclasses.dataclass
class StaticTopK(MixedDimension):
    """Static early selection: the same k fields for every example, the
    others never read (the strong baseline of the feature-selection
    benchmarks: as accurate as no selection on several data sets at half
    the fields, and the fastest).

    Args:
        k, k_ratio, fields, importance: as `MixedDimension`.

    Example:

    >>> StaticTopK(k=1, importance=[0.0, 0.5]).wide_fields(["a", "b"])
    [1]

    Reference: the static selectors benchmarked by ERASE (Jia et al.,
    "ERASE: Benchmarking Feature Selection Methods for Deep Recommender
    Systems", KDD 2024); the ranking here is permutation importance.
    """

    d_small: int = dataclasses.field(default=0, init=False, repr=False)

    kind = "static"

    def _check_d_small(self):
        _check(self.d_small == 0, "d_small", self.d_small, "0 for StaticTopK (use MixedDimension for narrow fields)")


SELECTIONS = {"static": StaticTopK, "mixed_dimension": MixedDimension, "adafs": AdaFS, "aefs": AEFS}
SELECTION_TYPES = (StaticTopK, MixedDimension, AdaFS, AEFS)

# The selection options a command line takes, and what each does. Their type,
# default and the methods that take them come from the classes' fields
# (`command_line_options`), so `train`, `compare`, `build_model` and the
# bench read one list; a field in neither dict fails tests/test_cli_help.py.
OPTION_HELP = {
    "k": "fields kept per row (for mixed_dimension: fields at full width)",
    "k_ratio": "fraction of the fields kept when --k is not given (default 0.5)",
    "fields": "the kept (wide) fields by name, comma-separated, instead of ranking them",
    "d_small": "width of the fields not kept",
    "resolution": "mixed (a share of k fixed on every row, dropped fields seen through their small "
                  "embeddings) or single (the paper's form)",
    "keep_share": "at mixed resolution: share of k kept on every row",
    "rank_epochs": "at mixed resolution: epochs before the fixed fields are ranked",
    "controller": "the scoring controller: mlp (AdaFS) or mvfs (multi-view)",
    "dropout": "dropout inside the controller",
    "reweight": "renormalise the kept fields' scores",
    "weight_scale": "mean (kept weights average 1) or sum (they sum to 1, the papers' form)",
    "output_layer": "a linear layer before the controller's softmax",
    "d_aux": "width of the small auxiliary embeddings",
    "aux_hidden_units": "MLP widths of the small prediction head",
    "aux_backbone": "the small head's backbone, e.g. dnn (default: a small copy of --backbone)",
    "aux_loss_weight": "weight of the small head's BCE",
    "embedding_alignment": "weight of the embedding alignment loss",
    "prediction_alignment": "weight of the prediction alignment loss",
    "alignment": "alignment distance: mse, kl or huber",
    "warmup_steps": "training steps of soft selection over all fields before the hard top-k",
}
# Options set from Python only, and why.
PYTHON_ONLY = {
    "importance": "one number per field; `train` ranks the fields itself (--selection static, "
                  "mixed_dimension, mixed)",
    "field_prior": "one number per field, the controller's initial bias (aefs_keras.importance)",
}


def command_line_options() -> list[dict[str, Any]]:
    """One entry per `OPTION_HELP` option: its name, element type, whether
    it takes a list, its default, help and the methods that take it."""
    out = []
    for name, help_text in OPTION_HELP.items():
        methods, default, hint = [], None, None
        for method, cls in SELECTIONS.items():
            field = {f.name: f for f in dataclasses.fields(cls)}.get(name)
            if field is None or not field.init:
                continue
            methods.append(method)
            if hint is None:
                hint, default = typing.get_type_hints(cls)[name], field.default
        if hint is None:
            raise ValueError(f"OPTION_HELP names {name!r}, an option of no selection class")
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        is_list = typing.get_origin(args[0]) is not None and typing.get_args(args[0]) != ()
        kind = typing.get_args(args[0])[0] if is_list else args[0]
        if typing.get_origin(kind) is not None:  # Sequence[str | int]: names
            kind = str
        out.append({"name": name, "type": kind, "list": is_list, "default": default,
                    "help": help_text, "methods": methods})
    return out


def as_selection(selection, options: dict[str, Any] | None = None):
    """None, a selection object, or its name ("static", "aefs", ...) with `options`
    (each must apply to that method) -> None or a selection object."""
    options = dict(options or {})
    if selection is None:
        if options:
            raise ValueError(f"{_names(options)} {_verb(options)} only with a selection. Received: "
                         f"{_items(options)}, selection=None")
        return None
    if isinstance(selection, (AdaFS, MixedDimension)):
        if options:
            raise ValueError(f"Give {_names(options)} to the {type(selection).__name__} object, not "
                             f"build_model. Received: {_items(options)}")
        return selection
    if selection not in SELECTIONS:
        raise ValueError(f"`selection` must be None, {', '.join(map(repr, SELECTIONS))}, or a StaticTopK, "
                         f"MixedDimension, AdaFS or AEFS object. Received: selection={selection!r}")
    cls = SELECTIONS[selection]
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = {k: v for k, v in options.items() if k not in known}
    if unknown:
        raise ValueError(f"{_names(unknown)} {'does' if len(unknown) == 1 else 'do'} not apply to "
                         f"selection={selection!r} (its options: "
                         f"{', '.join(sorted(known))}). Received: {_items(unknown)}")
    return cls(**options)


def _verb(options):
    return "applies" if len(options) == 1 else "apply"


def _names(options):
    return ", ".join(f"`{k}`" for k in sorted(options))


def _items(options):
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items()))
