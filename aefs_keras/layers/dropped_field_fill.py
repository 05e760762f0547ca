"""DroppedFieldFill: a learned vector in the place of each field a row dropped."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.ops import assemble_fields, place_fields


@keras.saving.register_keras_serializable(package="aefs_keras")
class DroppedFieldFill(keras.layers.Layer):
    """The main embeddings of all F fields, with a learned per-field vector
    where a row dropped the field. AEFS at mixed resolution
    (`AEFS(resolution="mixed")`, the default) uses it `from_aux` (and
    `factored` where the backbone takes it so); the other forms are
    research variants (`experimental.ResearchAEFS(dropped_fill=...)`).

    Early selection zero-fills the dropped fields, so the backbone cannot
    tell "dropped" from "an embedding near zero". A learned fill m_f (one
    vector per field, no lookup: the same for every row) is mean imputation
    with an indicator: the backbone sees what a dropped field usually says.
    It starts at zeros, so an untrained fill is AEFS's zero-fill.

    With `from_aux`, the fill also depends on the row: m_f + a_f P_f, where
    a_f is the field's auxiliary embedding (B, F, d_aux), which the
    selector has looked up for every field anyway, and P_f a learned
    (d_aux, d) projection (zeros at the start). The backbone then sees
    every field, the dropped ones at the auxiliary width's resolution, and
    no more embedding values are read.

    With `residual` (needs `from_aux`), every field gets its fill and a kept
    field's main embedding is added to it: m_f + a_f P_f + e_f. The main
    embedding is then a refinement of a coarse vector that every row sees,
    not a different vector that replaces it when the field is kept.

    With `factored` (needs `compact` and `from_aux`, not `residual`), the
    layer returns the fill unassembled, for a backbone that takes it so
    (`Backbone.supports_factored_fill`): {"codes": (B, F, d_aux + 1), the
    auxiliary embeddings with a constant 1 appended, zeros at the kept
    fields; "weights": (F, d_aux + 1, d), P_f with m_f as its last row}.
    Field f of row b is then codes[b, f] @ weights[f] where dropped; the
    backbone folds that into its first linear step and no (B, F, d) tensor
    is made. The same variables as the assembled form, so a saved model
    loads either way.

    Args:
        num_fields: F.
        compact: True when called with the kept fields' embeddings
            (B, m, d) and their `indices` (B, m); False when the embeddings
            are already (B, F, d) with zeros at the dropped fields.
        from_aux: also take the auxiliary embeddings (third argument).
        residual: add the fill to the kept fields too (with `from_aux`).
        factored: return the fill's codes and weights (see above).

    Example:

    >>> import numpy as np
    >>> fill = DroppedFieldFill(3)
    >>> out = fill(np.ones((1, 2, 2), "float32"), np.array([[0, 2]]))
    >>> _ = fill.fill.assign(np.full((3, 2), 5.0, "float32"))
    >>> fill(np.ones((1, 2, 2), "float32"), np.array([[0, 2]])).numpy()[0].tolist()
    [[1.0, 1.0], [5.0, 5.0], [1.0, 1.0]]
    """

    def __init__(self, num_fields, compact=True, from_aux=False, residual=False, factored=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_fields, bool) or not isinstance(num_fields, int) or num_fields < 1:
            raise ValueError(f"`num_fields` must be a positive integer. Received: num_fields={num_fields!r}")
        if residual and not from_aux:
            raise ValueError("`residual=True` needs `from_aux=True` (the coarse vector is the auxiliary "
                             f"embedding's projection). Received: residual={residual!r}, from_aux={from_aux!r}")
        if factored and (not compact or not from_aux or residual):
            raise ValueError("`factored=True` needs `compact=True` and `from_aux=True`, and not `residual` "
                             f"(a kept row plus its fill would need cross terms). Received: compact={compact!r}, "
                             f"from_aux={from_aux!r}, residual={residual!r}")
        self.num_fields, self.compact, self.from_aux = num_fields, bool(compact), bool(from_aux)
        self.residual, self.factored = bool(residual), bool(factored)

    def build(self, embeddings_shape, indices_shape=None, aux_shape=None):
        dim = embeddings_shape[-1]
        self.fill = self.add_weight(name="fill", shape=(self.num_fields, dim), initializer="zeros")
        if self.from_aux:
            if aux_shape is None:
                raise ValueError("DroppedFieldFill(from_aux=True) needs the auxiliary embeddings (B, F, d_aux)")
            self.projection = self.add_weight(name="projection", shape=(self.num_fields, aux_shape[-1], dim),
                                              initializer="zeros")

    def call(self, embeddings, indices, aux=None):
        indices = tf.cast(indices, tf.int32)
        if self.factored:
            return self._factors(embeddings, indices, aux)
        if self.compact and self.from_aux:
            return self._assembled(embeddings, indices, aux)
        placed = place_fields(embeddings, indices, self.num_fields) if self.compact else embeddings
        kept = tf.reduce_max(tf.one_hot(indices, self.num_fields, dtype=placed.dtype), axis=1)  # (B, F)
        fill = tf.cast(self.fill, placed.dtype)[None]
        if self.from_aux:
            fill = fill + tf.einsum("bfa,fad->bfd", tf.cast(aux, placed.dtype),
                                    tf.cast(self.projection, placed.dtype))
        if self.residual:
            return placed + fill
        return placed + (1.0 - kept)[..., None] * fill

    def _weights(self, dtype):
        """(F, d_aux + 1, d): P_f with m_f as the row a constant-1 code picks."""
        return tf.concat([tf.cast(self.projection, dtype), tf.cast(self.fill, dtype)[:, None]], 1)

    def _factors(self, embeddings, indices, aux):
        dtype = embeddings.dtype
        aux = tf.cast(aux, dtype)
        dropped = 1.0 - tf.reduce_max(tf.one_hot(indices, self.num_fields, dtype=dtype), axis=1)  # (B, F)
        codes = tf.concat([aux, tf.ones_like(aux[..., :1])], -1) * dropped[..., None]
        return {"codes": codes, "weights": self._weights(dtype)}

    def _assembled(self, embeddings, indices, aux):
        """The compact auxiliary fill without (B, F, d) temporaries: the fill
        m_f + a_f P_f of every field as one field-major batched matmul (m_f
        as the row of P_f that a constant-1 column of a_f picks), assembled
        with the kept rows by `ops.assemble_fields`. The same outputs and
        gradients as the plain path (tests/test_fast_path.py)."""
        dtype = embeddings.dtype
        aux = tf.cast(aux, dtype)
        aux = tf.concat([aux, tf.ones_like(aux[..., :1])], -1)                # (B, F, d_aux + 1)
        fill = tf.matmul(tf.transpose(aux, [1, 0, 2]), self._weights(dtype))     # (F, B, d)
        if self.residual:
            # A kept row is its main embedding plus its own field's fill.
            rows = tf.broadcast_to(tf.range(tf.shape(indices)[0])[:, None], tf.shape(indices))
            embeddings = embeddings + tf.gather_nd(fill, tf.stack([indices, rows], -1))
        return assemble_fields(embeddings, indices, fill)

    def compute_output_shape(self, embeddings_shape, indices_shape=None, aux_shape=None):
        if self.factored:
            e = aux_shape[-1] + 1
            return {"codes": (embeddings_shape[0], self.num_fields, e),
                    "weights": (self.num_fields, e, embeddings_shape[-1])}
        return (embeddings_shape[0], self.num_fields, embeddings_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_fields": self.num_fields, "compact": self.compact,
                "from_aux": self.from_aux, "residual": self.residual, "factored": self.factored}
