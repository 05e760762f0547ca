"""AlignmentLoss: pulls the auxiliary model towards the main model."""

from __future__ import annotations

import keras
import tensorflow as tf

from aefs_keras.checks import ALIGNMENTS
from aefs_keras.ops import squared_norm

KINDS = ALIGNMENTS
_REQUIRED = ("aux_embeddings", "main_embeddings", "mask", "aux_probability", "main_probability")


def _times_constant(e, v):
    """e @ v^T, differentiated for v only: e is a stop-gradient target, and
    TF's generic gradient would still compute an (N, d_main) gradient for it."""
    @tf.custom_gradient
    def product(v):
        return tf.matmul(e, v, transpose_b=True), lambda g: tf.matmul(g, e, transpose_a=True)

    return tf.autograph.experimental.do_not_convert(product)(v)


@keras.saving.register_keras_serializable(package="aefs_keras")
class AlignmentLoss(keras.layers.Layer):
    """Embedding and prediction alignment losses of AEFS.

    The main model is the teacher (stop-gradient); the auxiliary model is
    pulled towards it:

    - embedding alignment: dist(Dense(e_aux) * mask, stop_gradient(e_main)),
      with a learned `d_aux -> d_main` projection and `e_main` the main
      embeddings already scaled by the selector weights (zero elsewhere);
    - prediction alignment: dist(p_aux, stop_gradient(p_main)).

    Both are added with `add_loss` and tracked as `embedding_alignment_loss`
    and `prediction_alignment_loss` in `History` (and `val_` ones). A term
    whose weight is 0 is neither computed nor tracked (its gradient would
    be zero, its cost real), and with an embedding weight of 0 the
    projection is kept, frozen, so that saved models keep one layout. The
    layer returns `main_probability` unchanged so that it sits on the path
    to the model output.

    Args:
        embedding_weight: weight of the embedding alignment (default 0.3).
        prediction_weight: weight of the prediction alignment (default 0.3).
        kind: "mse" (default), "huber", or "kl" (Bernoulli KL for the
            predictions, KL of softmax-normalised vectors for embeddings).
        huber_delta: delta of the Huber kind.

    Call with a dict: `aux_embeddings` (B, F, d_aux), `main_embeddings`
    (B, F, d_main), `mask` (B, F), `aux_probability` and `main_probability`
    (B, 1). With compact main embeddings (B, k, d_main) from
    `ConditionalEmbedding(output_mode="compact")`, also pass `indices`
    (B, k): the embedding term is then computed at the kept fields only and
    equals the scattered form's (a mean over all F fields, where the unkept
    ones add 0).

    Example:

    >>> import numpy as np
    >>> p = AlignmentLoss()({"aux_embeddings": np.ones((2, 3, 4), "float32"),
    ...     "main_embeddings": np.ones((2, 3, 8), "float32"),
    ...     "mask": np.ones((2, 3), "float32"),
    ...     "aux_probability": np.full((2, 1), 0.2, "float32"),
    ...     "main_probability": np.full((2, 1), 0.6, "float32")})
    >>> p.shape
    TensorShape([2, 1])

    Reference: "Adaptive Early Feature Selection for Efficient CTR
    Prediction", arXiv 2509.12076 (IEEE TKDE 2025).
    """

    def __init__(self, embedding_weight=0.3, prediction_weight=0.3, kind="mse",
                 huber_delta=1.0, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("embedding_weight", embedding_weight),
                           ("prediction_weight", prediction_weight)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{arg}` must be a non-negative number. Received: {arg}={value!r}")
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        self.embedding_weight = float(embedding_weight)
        self.prediction_weight = float(prediction_weight)
        self.kind = kind
        self.huber_delta = float(huber_delta)
        self.embedding_tracker = (keras.metrics.Mean(name="embedding_alignment_loss")
                                  if self.embedding_weight else None)
        self.prediction_tracker = (keras.metrics.Mean(name="prediction_alignment_loss")
                                   if self.prediction_weight else None)
        self._projection = None

    def build(self, shapes):
        if not isinstance(shapes, dict) or any(k not in shapes for k in _REQUIRED):
            raise ValueError(
                f"AlignmentLoss expects a dict with keys {list(_REQUIRED)}. "
                f"Received: {sorted(shapes) if isinstance(shapes, dict) else shapes}"
            )
        d_main = shapes["main_embeddings"][-1]
        self._projection = keras.layers.Dense(d_main, name="projection")
        self._projection.build(shapes["aux_embeddings"])
        # Unused at weight 0: frozen, so that no optimizer looks for its gradient.
        self._projection.trainable = bool(self.embedding_weight)

    def _distance(self, pred, target, probabilities):
        if self.kind == "mse":
            return tf.reduce_mean(tf.square(pred - target))
        if self.kind == "huber":
            err = tf.abs(pred - target)
            quad = tf.minimum(err, self.huber_delta)
            return tf.reduce_mean(0.5 * quad**2 + self.huber_delta * (err - quad))
        eps = 1e-7
        if probabilities:  # Bernoulli KL(target || pred)
            t = tf.clip_by_value(target, eps, 1 - eps)
            p = tf.clip_by_value(pred, eps, 1 - eps)
            kl = t * tf.math.log(t / p) + (1 - t) * tf.math.log((1 - t) / (1 - p))
            return tf.reduce_mean(kl)
        t = tf.nn.softmax(target, axis=-1)
        log_p = tf.nn.log_softmax(pred, axis=-1)
        return tf.reduce_mean(tf.reduce_sum(t * (tf.math.log(t + eps) - log_p), -1))

    def _projected_mse(self, aux, mask, target):
        """mean((mask * (aux W + c) - target)^2) without the (B, m, d_main)
        projection. With a = [aux, 1] and V = [W; c] ((d_aux + 1) x d_main),
        p = a V, so per field vector
        |m p - e|^2 = m^2 a (V V^T) a - 2 m a (V e) + |e|^2:
        only (B*m, d_aux + 1) tensors are written, and the main embeddings
        are read twice (for V e and |e|^2) instead of a d_main-wide
        product being written, read and differentiated."""
        d_aux, d_main = aux.shape[-1], target.shape[-1]
        v = tf.concat([tf.convert_to_tensor(self._projection.kernel),
                       tf.convert_to_tensor(self._projection.bias)[None]], 0)
        a = tf.reshape(aux, [-1, d_aux])
        a = tf.concat([a, tf.ones_like(a[:, :1])], 1)
        e = tf.reshape(target, [-1, d_main])
        m = tf.reshape(mask, [-1])
        p_sq = tf.reduce_sum(tf.matmul(a, tf.matmul(v, v, transpose_b=True)) * a, -1)
        p_e = tf.reduce_sum(_times_constant(e, v) * a, -1)
        # |e|^2 is a constant of the loss (e is a stop-gradient target): its
        # mean comes from one norm reduction, not a (B*m, d_main) square.
        e_sq = squared_norm(e) / tf.cast(tf.shape(e)[0], e.dtype)
        per_field = tf.square(m) * p_sq - 2.0 * m * p_e
        return (tf.reduce_mean(per_field) + e_sq) / float(d_main)

    def call(self, inputs):
        main_p = inputs["main_probability"]
        terms = []
        if self.embedding_weight:
            emb_loss = self._embedding_term(inputs)
            terms.append(self.embedding_weight * emb_loss)
            self.embedding_tracker.update_state(emb_loss)
        if self.prediction_weight:
            pred_loss = self._distance(inputs["aux_probability"], tf.stop_gradient(main_p), probabilities=True)
            terms.append(self.prediction_weight * pred_loss)
            self.prediction_tracker.update_state(pred_loss)
        if terms:
            self.add_loss(tf.add_n(terms))
        return tf.identity(main_p)

    def _embedding_term(self, inputs):
        mask = tf.cast(inputs["mask"], tf.float32)
        aux = inputs["aux_embeddings"]
        aux_fields = aux.shape[1]
        share = None
        if "indices" in inputs:  # compact: compute only at the kept fields
            indices = tf.cast(inputs["indices"], tf.int32)
            aux = tf.gather(aux, indices, batch_dims=1)
            mask = tf.gather(mask, indices, batch_dims=1)
            # Unkept fields add exactly 0 to every kind of distance (both
            # sides are zero vectors), so the mean over all F fields is the
            # mean over the m kept ones times m / F.
            share = tf.cast(tf.shape(indices)[1], tf.float32) / float(aux_fields)
        target = tf.stop_gradient(inputs["main_embeddings"])
        if share is not None and self.kind == "mse":
            emb_loss = self._projected_mse(aux, mask, target) * share
        else:
            projected = self._projection(aux) * mask[..., None]
            emb_loss = self._distance(projected, target, probabilities=False)
            if share is not None:
                emb_loss = emb_loss * share
        return emb_loss

    def compute_output_shape(self, shapes):
        return shapes["main_probability"]

    def main_probability_input(self):
        """The `main_probability` tensor this layer was called on in a
        functional model: the head that serving keeps (the auxiliary head
        and this layer are training-only)."""
        flat = self.input
        if isinstance(flat, dict):
            return flat["main_probability"]
        # A dict input comes back flattened in sorted-key order.
        keys = sorted(_REQUIRED + (("indices",) if len(flat) == len(_REQUIRED) + 1 else ()))
        return flat[keys.index("main_probability")]

    def get_config(self):
        config = super().get_config()
        config.update(embedding_weight=self.embedding_weight,
                      prediction_weight=self.prediction_weight,
                      kind=self.kind, huber_delta=self.huber_delta)
        return config
