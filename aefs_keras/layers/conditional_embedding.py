"""ConditionalEmbedding: the big table, read only at the selected fields."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from aefs_keras.layers.field_embedding import (FieldTables, check_field_sizes, check_ids_shape, check_layout,
                                               ids_shape_of, layout_config)
from aefs_keras.ops import scatter_fields, warmup_fields

OUTPUT_MODES = ("scattered", "compact")


@keras.saving.register_keras_serializable(package="aefs_keras")
class ConditionalEmbedding(FieldTables, keras.layers.Layer):
    """Looks up only the k selected fields of each example.

    Gathers exactly B * k ids with `tf.gather` (the selected fields' ids
    plus their field offsets) and reads only those rows of the table, so
    the table's gradient is `tf.IndexedSlices` over those rows and nothing
    else. Rows are scaled by the selector weights when given.

    Args:
        field_sizes: ids per field (`Schema.field_sizes`).
        output_dim: width of the main embeddings (`d_main`, default 32).
        output_mode: "scattered" returns (B, F, d) with zero vectors at the
            unselected fields (the paper's form, any backbone can take it);
            "compact" returns (B, k, d) in the order of `indices`.
        embeddings_initializer: initializer of the table.
        embeddings_regularizer: optional regularizer of the table.
        offsets, bag_fields: as in `FieldEmbedding` (shared blocks,
            multi-valued fields: a kept one reads all its values' rows, a
            dropped one none).
        field_dims: per-field storage widths, as in `FieldEmbedding`.

    Call with `ids` (B, F) (or `FieldIds`' dict), `indices` (B, k) from `AuxiliarySelector`, and
    optionally `weights` (B, k). During a selector's soft warm-up, also pass
    `warmup_weights` (B, F) and its `warming` flag (B,): on training steps
    where the flag is set, all F fields are looked up and scaled by
    `warmup_weights` instead ("scattered" mode only). Inference ignores them.

    Example:

    >>> import numpy as np
    >>> emb = ConditionalEmbedding([5, 5, 5], output_dim=2)
    >>> out = emb(np.array([[1, 2, 3]]), np.array([[0, 2]]), np.array([[0.5, 0.5]]))
    >>> out.shape, float(abs(out[0, 1]).numpy().sum())
    (TensorShape([1, 3, 2]), 0.0)

    Reference: "Adaptive Early Feature Selection for Efficient CTR
    Prediction", arXiv 2509.12076 (IEEE TKDE 2025).
    """

    def __init__(
        self,
        field_sizes: Sequence[int],
        output_dim: int = 32,
        output_mode: str = "scattered",
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        offsets=None,
        bag_fields=(),
        field_dims=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.field_sizes = check_field_sizes(field_sizes)
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(
                f"`output_dim` must be a positive integer. Received: output_dim={output_dim!r}"
            )
        if output_mode not in OUTPUT_MODES:
            raise ValueError(
                f"`output_mode` must be one of {OUTPUT_MODES}. Received: "
                f"output_mode={output_mode!r}"
            )
        self.output_dim = output_dim
        self.output_mode = output_mode
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.offsets, self.table_rows, self.bag_fields = check_layout(self.field_sizes, offsets, bag_fields)
        self._init_tables(field_dims)
        self._k = None

    @property
    def num_fields(self) -> int:
        return len(self.field_sizes)

    def build(self, ids_shape, indices_shape=None, weights_shape=None,
              warmup_weights_shape=None, warming_shape=None):
        check_ids_shape("ConditionalEmbedding", ids_shape, self.num_fields)
        if indices_shape is None or len(indices_shape) != 2:
            raise ValueError(
                "ConditionalEmbedding expects `indices` of shape (batch, k). "
                f"Received: shape={indices_shape}"
            )
        self._k = indices_shape[-1]
        if warmup_weights_shape is not None and self.output_mode == "compact":
            raise ValueError("`warmup_weights` needs output_mode='scattered' (the warm-up looks "
                             "up all F fields). Received: output_mode='compact'")
        self._build_tables()

    def call(self, ids, indices, weights=None, warmup_weights=None, warming=None, training=None):
        if training and warmup_weights is not None:
            if warming is None:
                raise ValueError("`warming` must be given with `warmup_weights`. Received: warming=None")
            indices, weights = warmup_fields(indices, weights, warmup_weights, warming,
                                             self.num_fields, self.compute_dtype)
        rows = self._lookup(ids, indices)
        if weights is not None:
            rows = rows * tf.cast(weights, rows.dtype)[..., None]
        if self.output_mode == "compact":
            return rows
        return scatter_fields(rows, indices, self.num_fields)

    def compute_output_shape(self, ids_shape, indices_shape=None, weights_shape=None,
                             warmup_weights_shape=None, warming_shape=None):
        batch = ids_shape_of(ids_shape)[0]
        if self.output_mode == "compact":
            return (batch, indices_shape[-1], self.output_dim)
        return (batch, self.num_fields, self.output_dim)

    def activated_parameters(self) -> int:
        """Main embedding values read per example (k rows)."""
        if self._k is None:
            raise ValueError("ConditionalEmbedding is not built yet; k is unknown.")
        if self.field_dims:  # the mean width: what a row reads varies with the fields it keeps
            return int(round(int(self._k) * sum(self.field_dims) / self.num_fields))
        return int(self._k) * self.output_dim

    def get_config(self):
        config = super().get_config()
        config.update(
            field_sizes=list(self.field_sizes),
            output_dim=self.output_dim,
            output_mode=self.output_mode,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
            embeddings_regularizer=keras.regularizers.serialize(self.embeddings_regularizer),
            **layout_config(self),
            **self._tables_config(),
        )
        return config
