"""ResearchAEFS: AEFS with the research variants measured in docs/aefs.md."""

from __future__ import annotations

import dataclasses

import keras

from aefs_keras.selection import AEFS

AUX_INPUTS = ("selected", "soft")
MAIN_WEIGHTINGS = ("scaled", "straight_through", "unit", "unit_fixed")
DROPPED_FILLS = ("zeros", "learned", "aux", "aux_residual")
LINEAR_FIELDS = ("selected", "all")
# The options this adds to AEFS (the bench runner picks this class when a
# grid variant sets any of them).
OPTIONS = ("soft_gradient", "exploration", "score_decay", "aux_input", "main_weighting", "always_keep",
           "dropped_fill", "linear_fields")


@dataclasses.dataclass
class ResearchAEFS(AEFS):
    """`AEFS` plus research variants (docs/aefs.md has what each is worth).

    Args:
        soft_gradient, exploration, score_decay, always_keep: see
            `ExploringSelector` (always_keep: field indices every row keeps).
        aux_input: what the small head sees: "selected" (default, the
            paper) or "soft" (all fields, scaled by their soft scores times F).
        main_weighting: "scaled" (default, the paper) or "straight_through":
            the kept main embeddings enter unscaled in the forward pass and
            differentiate as if scaled (`StraightThroughOnes`); "unit":
            unscaled and no gradient to the controller from the main loss;
            "unit_fixed": that for the `always_keep` fields only, the
            per-row choices scaled (`FixedFieldsUnscaled`).
        dropped_fill: what the backbone sees for a field a row dropped:
            "zeros" (default, the paper), "learned", one learned vector
            per field, or "aux", that plus a learned projection of the
            field's auxiliary embedding (`DroppedFieldFill`; the backbone
            then takes all F fields: DNN, DeepFM and Wide&Deep take the
            fill factored into their first layer and FM, the others as a
            (B, F, d) tensor), or "aux_residual": that fill for every
            field, with a kept field's main embedding added to it.
        linear_fields: whose first-order weights (the width-1 table of
            DeepFM and Wide&Deep) are read: "selected" (default, the
            paper) or "all", every field's (F values per example more; the
            wide part then stays whole). "all" needs a `dropped_fill` other
            than "zeros" (the backbone takes all F fields).
        **AEFS options.

    Example:

    >>> ResearchAEFS(k=2, main_weighting="straight_through").main_weighting
    'straight_through'
    """

    # The research options vary the paper's form; the core's mixed form is
    # `AEFS(resolution="mixed")`.
    resolution: str = "single"
    soft_gradient: bool = False
    exploration: float = 0.0
    score_decay: float = 0.0
    aux_input: str = "selected"
    main_weighting: str = "scaled"
    always_keep: tuple = ()
    dropped_fill: str = "zeros"
    linear_fields: str = "selected"

    def __post_init__(self):
        super().__post_init__()
        if self.linear_fields not in LINEAR_FIELDS:
            raise ValueError(f"`linear_fields` must be one of {LINEAR_FIELDS}. "
                             f"Received: linear_fields={self.linear_fields!r}")
        if self.linear_fields == "all" and self.dropped_fill == "zeros":
            raise ValueError("`linear_fields='all'` needs the backbone to take all F fields: set `dropped_fill` "
                             "to 'learned' or 'aux'. Received: dropped_fill='zeros'")
        if self.dropped_fill not in DROPPED_FILLS:
            raise ValueError(f"`dropped_fill` must be one of {DROPPED_FILLS}. "
                             f"Received: dropped_fill={self.dropped_fill!r}")
        if self.aux_input not in AUX_INPUTS:
            raise ValueError(f"`aux_input` must be one of {AUX_INPUTS}. Received: aux_input={self.aux_input!r}")
        if self.main_weighting not in MAIN_WEIGHTINGS:
            raise ValueError(f"`main_weighting` must be one of {MAIN_WEIGHTINGS}. "
                             f"Received: main_weighting={self.main_weighting!r}")

    @classmethod
    def mixed_resolution(cls, importance, keep_share: float = 0.75, **options) -> "ResearchAEFS":
        """AEFS at mixed resolution (docs/aefs.md, "Mixed resolution"): the
        `keep_share` x k most important fields on every row, the rest of k
        chosen per row, the kept fields unscaled, and every dropped field
        seen by the backbone through its auxiliary embedding
        (`always_keep`, `main_weighting="unit"`, `dropped_fill="aux"`).

        Args:
            importance: one number per field, larger = more important, e.g.
                `aefs_keras.importance.permutation_importance` of a model
                without selection on validation rows.
            keep_share: share of k fixed on every row (rounded), in [0, 1).
            **options: other `ResearchAEFS` options (`k` or `k_ratio`, ...).

        Example:

        >>> sel = ResearchAEFS.mixed_resolution([0.02, 0.0, 0.05, 0.01, 0.03, 0.0, 0.0, 0.01], k=4)
        >>> sel.always_keep, sel.main_weighting, sel.dropped_fill
        ((0, 2, 4), 'unit', 'aux')
        """
        from aefs_keras.checks import resolve_k
        from aefs_keras.importance import most_important

        if isinstance(keep_share, bool) or not isinstance(keep_share, (int, float)) or not 0.0 <= keep_share < 1.0:
            raise ValueError(f"`keep_share` must be in [0, 1). Received: keep_share={keep_share!r}")
        num_fields = len(importance)
        k = resolve_k(num_fields, options.get("k"), options.get("k_ratio"))
        keep = most_important(importance, int(round(keep_share * k)))
        options = {"main_weighting": "unit", "dropped_fill": "aux", **options}
        return cls(always_keep=keep, **options)

    def selector(self, field_sizes, k, embeddings_initializer, name, **layout):
        from aefs_keras.experimental.exploring_selector import ExploringSelector

        return ExploringSelector(field_sizes, k=k, soft_gradient=self.soft_gradient,
                                 exploration=self.exploration, score_decay=self.score_decay,
                                 always_keep=tuple(self.always_keep),
                                 **self._selector_options(), **layout,
                                 embeddings_initializer=embeddings_initializer, name=name)

    def main_weights(self, selected, name):
        weights, indices = selected["weights"], selected.get("indices")
        if self.main_weighting == "unit_fixed":
            from aefs_keras.experimental.fixed_fields_unscaled import FixedFieldsUnscaled

            layer = FixedFieldsUnscaled(tuple(self.always_keep), name=name)
            return layer(weights) if indices is None else layer(weights, indices)
        if self.main_weighting in ("straight_through", "unit"):
            from aefs_keras.experimental.straight_through_ones import StraightThroughOnes

            return StraightThroughOnes(gradient=self.main_weighting == "straight_through", name=name)(weights)
        return super().main_weights(selected, name)

    def linear_terms(self, field_sizes, ids, lookup, output_mode, **layout):
        if self.linear_fields == "selected":
            return super().linear_terms(field_sizes, ids, lookup, output_mode, **layout)
        from aefs_keras.layers.field_embedding import FieldEmbedding

        # Every field's first-order weight: F values per example more, and
        # the wide part stays whole.
        return FieldEmbedding(field_sizes, 1, embeddings_initializer="zeros", name="linear_embedding", **layout)(ids)

    def backbone_inputs(self, emb, linear, indices, compact, num_fields, aux=None, factored_fill=False):
        if self.dropped_fill == "zeros":
            return super().backbone_inputs(emb, linear, indices, compact, num_fields)
        from aefs_keras.layers.dropped_field_fill import DroppedFieldFill

        kept = {}
        if self.dropped_fill == "aux" and compact and factored_fill:
            # The backbone takes the fill factored: no (B, F, d) tensor.
            fill = DroppedFieldFill(num_fields, compact=True, from_aux=True, factored=True,
                                    name="dropped_fill")(emb, indices, aux)
            kept = {"indices": indices, "fill_codes": fill["codes"], "fill_weights": fill["weights"]}
        elif self.dropped_fill in ("aux", "aux_residual"):
            emb = DroppedFieldFill(num_fields, compact=compact, from_aux=True,
                                   residual=self.dropped_fill == "aux_residual", name="dropped_fill")(emb, indices, aux)
        else:
            emb = DroppedFieldFill(num_fields, compact=compact, name="dropped_fill")(emb, indices)
        if linear is not None and self.linear_fields == "selected":
            linear = DroppedFieldFill(num_fields, compact=compact, name="dropped_fill_linear")(linear, indices)
        return emb, linear, kept

    def aux_embeddings(self, selected):
        if self.aux_input == "selected":
            return super().aux_embeddings(selected)
        # Every field, scaled by its soft score times F (averaging 1).
        scores = selected["scores"]
        num_fields = scores.shape[-1]
        soft = scores / keras.ops.sum(scores, axis=-1, keepdims=True)
        return selected["embeddings"] * keras.ops.expand_dims(soft * float(num_fields), -1)
