"""FactorizationMachine: the pairwise interaction term of DeepFM."""

import keras
import tensorflow as tf

from aefs_keras.layers.backbone import is_group_shapes, is_groups
from aefs_keras.ops import field_sums, fill_sums


@keras.saving.register_keras_serializable(package="aefs_keras")
class FactorizationMachine(keras.layers.Layer):
    """Sum over field pairs of <e_i, e_j>, in O(F d): 0.5 ((sum e)^2 - sum e^2).

    Zero vectors (unselected fields) add nothing to the sum.

    Called with a list of field groups of different widths (a
    mixed-dimension model), the fields of every group narrower than the
    widest are mapped to that width by a learned per-field matrix P_f
    (d_g x d): the dot products need one width, the rest of the model does
    not. Their sums come from the narrow vectors and P_f (`ops.fill_sums`),
    without the projected (B, F_g, d) tensor.

    Example:

    >>> import numpy as np
    >>> e = np.array([[[1., 2.], [3., 4.]]], "float32")
    >>> FactorizationMachine()(e).numpy().round(4).tolist()  # 1*3 + 2*4
    [[11.0]]

    Reference: Rendle, "Factorization Machines", ICDM 2010.
    """

    def build(self, embeddings_shape, fill_shape=None):
        self.projections = []
        if not is_group_shapes(embeddings_shape):
            return
        width = max(shape[-1] for shape in embeddings_shape)
        for shape in embeddings_shape:
            if shape[-1] == width:
                self.projections.append(None)
                continue
            # Glorot-uniform per field (fan in d_g, fan out d).
            limit = (6.0 / (shape[-1] + width)) ** 0.5
            self.projections.append(self.add_weight(
                name=f"projection_{len(self.projections)}", shape=(shape[1], shape[-1], width),
                initializer=keras.initializers.RandomUniform(-limit, limit)))

    def call(self, embeddings, fill=None):
        """`fill`: None, or (codes, weights) of a low-rank fill for the
        fields whose `embeddings` are zero (`aefs_keras.ops.fill_sums`): the
        FM of the filled fields without their (B, F, d) vectors. The codes
        must be zero where a field has an embedding (no cross terms)."""
        if is_groups(embeddings):
            if fill is not None:
                raise ValueError("FactorizationMachine takes a factored `fill` with one width only")
            sums = [field_sums(g) if p is None else fill_sums(g, tf.cast(p, g.dtype))
                    for g, p in zip(embeddings, self.projections)]
        else:
            sums = [field_sums(embeddings)] + ([] if fill is None else [fill_sums(*fill)])
        total = tf.add_n([t for t, _ in sums])
        squares = tf.add_n([q for _, q in sums])
        return 0.5 * (tf.reduce_sum(tf.square(total), -1, keepdims=True) - squares[:, None])

    def compute_output_shape(self, input_shape, fill_shape=None):
        return (input_shape[0][0] if is_group_shapes(input_shape) else input_shape[0], 1)
