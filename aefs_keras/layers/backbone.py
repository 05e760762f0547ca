"""Backbone: the base class and contract of every backbone layer.

Subclass it for your own backbone and add it with
`aefs_keras.register_backbone(name, cls)`; `build_model` then builds it
as the main model (and, for AEFS, a small copy as the auxiliary head).
"""

import keras
import tensorflow as tf

from aefs_keras.layers.mlp import MLP
from aefs_keras.ops import place_fields


def is_groups(embeddings) -> bool:
    """True for a list of field groups (a mixed-width call)."""
    return isinstance(embeddings, (list, tuple))


def is_group_shapes(shape) -> bool:
    """True for the shapes of a list of field groups."""
    return isinstance(shape, (list, tuple)) and len(shape) > 0 and isinstance(shape[0], (list, tuple))


@keras.saving.register_keras_serializable(package="aefs_keras")
class Backbone(keras.layers.Layer):
    """Field embeddings -> one logit; the base of DNN, DeepFM, DCN, ...

    The contract:

    - `call(embeddings, linear=None, indices=None, training=None)` maps
      field embeddings (B, F, d) to a logit (B, 1). Unselected fields
      arrive as zero vectors.
    - `linear` (B, F, 1): each field's first-order weight, given only when
      the class sets `uses_linear = True` (the builder then creates a
      1-wide table for it); absent for the small auxiliary head.
    - With `supports_compact = True`, the class also accepts the kept fields
      only: `embeddings` (B, m, d) and `linear` (B, m, 1) hold the fields
      `indices` (B, m), and the result must equal the call on the scattered
      form (zeros at the other fields). That needs `num_fields` (F); the
      builder passes it. Default False: a user's backbone gets the
      scattered (B, F, d) form.
    - With `supports_factored_fill = True` (and compact), the class also
      accepts `fill_codes` (B, F, e) and `fill_weights` (F, e, d): every
      field f then holds fill_codes[b, f] @ fill_weights[f] plus its kept
      row, if any (the codes are zero at the kept fields), and the result
      must equal the call on that (B, F, d) tensor. The mixed form's fill
      of the dropped fields comes so (`ops.fill_vectors`); `deep()` takes
      it folded into the first layer. Default False: the builder then
      assembles the (B, F, d) tensor.
    - With `supports_mixed_widths = True`, `embeddings` may also be a list
      of field groups [(B, F_g, d_g), ...] of different widths (a
      mixed-dimension model: important fields wide, the rest narrow;
      `FieldEmbedding(output_mode="groups")`). The fields are the groups'
      concatenation; linear steps take each field at its own width (a
      projection to a common width would fold into them), so the first
      MLP layer reads sum(F_g d_g) values, not F d. Default False: the
      builder projects narrow fields to the common width first.

    This base class gives the MLP part (`mlp` and `head`, built by the
    default `build`), `deep()` (the MLP on the flattened fields, compact or
    not), `linear_logit()` and a complete `get_config`. The default `call`
    is the plain DNN: `head(MLP(flatten(embeddings)))`.

    Args:
        hidden_units: MLP widths.
        dropout: MLP dropout.
        batch_norm: batch normalisation in the MLP.
        num_fields: F, needed only for calls with `indices`.

    Example, a user's backbone (an MLP plus a sum of the field vectors):

    >>> import numpy as np
    >>> class SumDNN(Backbone):
    ...     def call(self, embeddings, linear=None, indices=None, training=None):
    ...         deep = self.head(self.deep(embeddings, training=training))
    ...         return deep + keras.ops.sum(embeddings, axis=(1, 2))[:, None]
    >>> SumDNN([8])(np.ones((2, 3, 4), "float32")).shape
    TensorShape([2, 1])
    """

    uses_linear = False
    supports_compact = False
    supports_factored_fill = False
    supports_mixed_widths = False

    def __init__(self, hidden_units=(400, 400, 400), dropout=0.0, batch_norm=False,
                 num_fields=None, **kwargs):
        super().__init__(**kwargs)
        self.mlp = MLP(hidden_units, dropout=dropout, batch_norm=batch_norm, name="mlp")
        self.hidden_units = self.mlp.hidden_units
        self.dropout = dropout
        self.batch_norm = batch_norm
        if num_fields is not None and (isinstance(num_fields, bool) or not isinstance(num_fields, int)
                                       or num_fields < 1):
            raise ValueError(f"`num_fields` must be None or a positive integer. "
                             f"Received: num_fields={num_fields!r}")
        self.num_fields = num_fields
        self.head = keras.layers.Dense(1, name="head")

    @staticmethod
    def flatten(embeddings):
        if is_groups(embeddings):
            return tf.concat([Backbone.flatten(g) for g in embeddings], -1)
        shape = embeddings.shape
        return tf.reshape(embeddings, [-1, shape[1] * shape[2]])

    def flat_shape(self, embeddings_shape, indices_shape=None):
        """(B, D): the shape of the flattened fields (scattered, or the
        concatenated groups of a mixed-width call)."""
        if is_group_shapes(embeddings_shape):
            name = type(self).__name__
            if not self.supports_mixed_widths:
                self.field_shape(embeddings_shape)  # raises, naming the widths
            if indices_shape is not None:
                raise ValueError(f"{name}: field groups of mixed widths are a static layout and take no "
                                 f"`indices`. Received: indices shape {tuple(indices_shape)}")
            for shape in embeddings_shape:
                self.check_embeddings(name, shape)
                if shape[1] is None:
                    raise ValueError(f"{name} expects field groups with known fields. "
                                     f"Received: shape={tuple(shape)}")
            return (embeddings_shape[0][0], sum(s[1] * s[2] for s in embeddings_shape))
        shape = self.field_shape(embeddings_shape, indices_shape)
        return (shape[0], shape[1] * shape[2])

    @staticmethod
    def check_embeddings(name, shape):
        if len(shape) != 3 or shape[2] is None:
            raise ValueError(
                f"{name} expects embeddings of shape (batch, fields, dim) with known "
                f"fields and dim. Received: shape={tuple(shape)}"
            )

    def field_shape(self, embeddings_shape, indices_shape=None):
        """The scattered (B, F, d) shape, also when built on compact rows."""
        name = type(self).__name__
        if is_group_shapes(embeddings_shape):
            raise ValueError(f"{name} takes one embedding width; field groups of widths "
                             f"{[s[-1] for s in embeddings_shape]} need a backbone with "
                             "`supports_mixed_widths` (or project them to one width first)")
        self.check_embeddings(name, embeddings_shape)
        if indices_shape is None:
            if embeddings_shape[1] is None:
                raise ValueError(f"{name} expects embeddings of shape (batch, fields, dim) with "
                                 f"known fields. Received: shape={tuple(embeddings_shape)}")
            return tuple(embeddings_shape)
        if self.num_fields is None:
            raise ValueError(f"{name} called with `indices` (compact kept fields) needs "
                             "`num_fields`. Received: num_fields=None")
        if len(indices_shape) != 2:
            raise ValueError(f"{name} expects `indices` of shape (batch, m). "
                             f"Received: shape={tuple(indices_shape)}")
        return (embeddings_shape[0], self.num_fields, embeddings_shape[2])

    def flat_input(self, embeddings, indices=None):
        """(B, F * d): the flattened scattered embeddings (the groups'
        concatenation for a mixed-width call)."""
        if indices is None:
            return self.flatten(embeddings)
        placed = place_fields(embeddings, indices, self.num_fields)
        return tf.reshape(placed, [-1, self.num_fields * embeddings.shape[-1]])

    def deep(self, embeddings, indices=None, training=None, fill=None):
        """MLP(flatten(embeddings)), also on compact rows (`fill`: (codes,
        weights) of a factored fill, see the contract)."""
        if indices is None:
            if fill is not None:
                raise ValueError(f"{type(self).__name__}: a factored fill (`fill_codes`) needs the compact "
                                 "call (`indices`). Received: indices=None")
            return self.mlp(self.flatten(embeddings), training=training)
        return self.mlp.call_on_fields(embeddings, indices, self.num_fields, training=training, fill=fill)

    @staticmethod
    def fill_of(fill_codes, fill_weights):
        """(codes, weights), or None when the call has no factored fill."""
        if fill_codes is None:
            return None
        if fill_weights is None:
            raise ValueError("`fill_codes` needs `fill_weights` (F, e, d). Received: fill_weights=None")
        return fill_codes, fill_weights

    def build(self, embeddings_shape, linear_shape=None, indices_shape=None):
        self.build_flat(self.flat_shape(embeddings_shape, indices_shape))

    def call(self, embeddings, linear=None, indices=None, training=None, fill_codes=None, fill_weights=None):
        fill = self.fill_of(fill_codes, fill_weights)
        return self.head(self.deep(embeddings, indices, training=training, fill=fill))

    def build_deep(self, field_shape):
        self.build_flat((field_shape[0], field_shape[1] * field_shape[2]))

    def build_flat(self, flat):
        """Builds the MLP and head for a flattened input of shape `flat`."""
        self.mlp.build(flat)
        self.head.build(self.mlp.compute_output_shape(flat))

    @staticmethod
    def linear_logit(linear):
        return tf.reduce_sum(tf.reshape(linear, [tf.shape(linear)[0], -1]), -1, keepdims=True)

    def compute_output_shape(self, embeddings_shape, *args, **kwargs):
        # One logit per row, whatever else `call` takes (a subclass's call
        # need not have `linear` or `indices`).
        if is_group_shapes(embeddings_shape):
            return (embeddings_shape[0][0], 1)
        return (embeddings_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, dropout=self.dropout,
                      batch_norm=self.batch_norm, num_fields=self.num_fields)
        return config
