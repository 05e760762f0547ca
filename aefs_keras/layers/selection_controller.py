"""SelectionController: per-example field scores from field embeddings."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from aefs_keras.checks import check_controller

# Moving-statistics momentum of the selectors' batch norms. Keras' 0.99
# leaves the inference statistics near their initial values for the first
# few hundred steps, so on small data the fields picked at inference are not
# the ones picked in training (criteo_80k, AEFS k = F/2, 220 steps, one seed:
# test AUC 0.725 with 0.99, 0.758 with 0.9).
NORM_MOMENTUM = 0.9

def check_field_prior(field_prior, num_fields, output_layer=True):
    if field_prior is None:
        return None
    try:
        prior = [float(v) for v in field_prior]
    except (TypeError, ValueError):
        prior = None
    if prior is None or len(prior) != num_fields or not all(math.isfinite(v) for v in prior):
        raise ValueError(f"`field_prior` must be {num_fields} finite numbers, one per field. "
                         f"Received: field_prior={field_prior!r}")
    if not output_layer:
        raise ValueError("`field_prior` initialises the controller's output layer, so it needs "
                         "output_layer=True. Received: output_layer=False")
    return prior


@keras.saving.register_keras_serializable(package="aefs_keras")
class SelectionController(keras.layers.Layer):
    """Scores the F fields of each example from its embeddings (B, F, d).

    `"mlp"` (AdaFS's controller): flatten -> Dense(F) -> BatchNorm -> ReLU -> Dropout
    -> Dense(F) -> softmax over fields. The last, linear Dense is ours
    (`output_layer=True`): the paper's form applies the softmax to ReLU
    outputs, which ties every field whose ReLU is 0 at the same score, so
    top-k picks among them by field index and they get no gradient (seen
    as a selection frequency that falls with field position). `"mvfs"` (MvFS): `num_views` such networks
    without dropout, each with its own softmax, mixed by a sigmoid gate
    Dense(views * F -> views); the mix s becomes 0.5 * (1 + tanh(T (s - 0.1)))
    with a temperature T rising from 1 by `temperature_step` per training
    step up to `max_temperature`.

    Args:
        num_fields: F.
        controller: "mlp" (AdaFS) or "mvfs" ("adafs", its former name,
            is read as "mlp").
        dropout: dropout rate of the AdaFS controller.
        num_views: number of MvFS sub-networks.
        temperature_step: MvFS temperature increase per training step.
        max_temperature: MvFS temperature cap.
        output_layer: add the linear Dense(F) before each softmax (default
            True); False gives the paper's exact controller.
        score_decay: L2 penalty on that layer's kernel and bias: pulls every
            field's score logit towards the same level, so a field keeps a
            high score only while the loss keeps pushing it up (default 0).
        field_prior: F numbers, the initial bias of that layer (default
            zeros): a starting ranking of the fields, e.g.
            `aefs_keras.importance.importance_prior(...)`. Trained as usual.

    Example:

    >>> import numpy as np
    >>> scores = SelectionController(3)(np.ones((2, 3, 4), "float32"))
    >>> scores.shape
    TensorShape([2, 3])

    References: Lin et al., "AdaFS", KDD 2022; Lee et al., "MvFS", CIKM 2023.
    """

    def __init__(
        self,
        num_fields: int,
        controller: str = "mlp",
        dropout: float = 0.2,
        num_views: int = 4,
        temperature_step: float = 1e-3,
        max_temperature: float = 5.0,
        output_layer: bool = True,
        score_decay: float = 0.0,
        field_prior=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_fields, int) or num_fields < 1:
            raise ValueError(
                f"`num_fields` must be a positive integer. Received: "
                f"num_fields={num_fields!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        if not isinstance(num_views, int) or num_views < 1:
            raise ValueError(
                f"`num_views` must be a positive integer. Received: num_views={num_views!r}"
            )
        self.num_fields = num_fields
        self.controller = check_controller(controller)
        self.dropout = dropout
        self.num_views = num_views
        self.temperature_step = float(temperature_step)
        self.max_temperature = float(max_temperature)
        self.output_layer = bool(output_layer)
        if not isinstance(score_decay, (int, float)) or score_decay < 0:
            raise ValueError(
                f"`score_decay` must be a number >= 0. Received: score_decay={score_decay!r}"
            )
        self.score_decay = float(score_decay)
        if self.score_decay and not self.output_layer:
            raise ValueError("`score_decay` needs `output_layer=True`. Received: "
                             f"score_decay={score_decay!r}, output_layer=False")
        self.field_prior = check_field_prior(field_prior, num_fields, self.output_layer)
        bias_init = (keras.initializers.Constant(self.field_prior) if self.field_prior is not None
                     else "zeros")
        decay = keras.regularizers.L2(self.score_decay) if self.score_decay else None
        views = 1 if self.controller == "mlp" else num_views
        self._dense = [keras.layers.Dense(num_fields, name=f"view_{i}") for i in range(views)]
        self._norm = [keras.layers.BatchNormalization(momentum=NORM_MOMENTUM, synchronized=True,
                                                      name=f"view_norm_{i}") for i in range(views)]
        self._dropout = keras.layers.Dropout(dropout) if self.controller == "mlp" else None
        self._out = (
            [keras.layers.Dense(num_fields, kernel_regularizer=decay, bias_regularizer=decay,
                                bias_initializer=bias_init, name=f"view_out_{i}")
             for i in range(views)]
            if self.output_layer else []
        )
        if self.controller == "mvfs":
            self._gate = keras.layers.Dense(num_views, activation="sigmoid", name="gate")

    def build(self, embeddings_shape):
        if len(embeddings_shape) != 3 or embeddings_shape[1] != self.num_fields:
            raise ValueError(
                f"SelectionController expects embeddings of shape (batch, "
                f"{self.num_fields}, dim). Received: shape={tuple(embeddings_shape)}"
            )
        flat = (embeddings_shape[0], embeddings_shape[1] * embeddings_shape[2])
        for dense, norm in zip(self._dense, self._norm):
            dense.build(flat)
            norm.build((flat[0], self.num_fields))
        for out in self._out:
            out.build((flat[0], self.num_fields))
        if self.controller == "mvfs":
            self._gate.build((flat[0], self.num_views * self.num_fields))
            self.step = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="step",
                aggregation="only_first_replica",  # one training step, however many replicas
            )

    def temperature(self):
        return tf.minimum(
            1.0 + self.temperature_step * self.step, self.max_temperature
        )

    def call(self, embeddings, training=None):
        b = tf.shape(embeddings)[0]
        flat = tf.reshape(embeddings, [b, -1])
        views = []
        for i, (dense, norm) in enumerate(zip(self._dense, self._norm)):
            h = tf.nn.relu(norm(dense(flat), training=training))
            if self._dropout is not None:
                h = self._dropout(h, training=training)
            if self._out:
                h = self._out[i](h)
            views.append(tf.nn.softmax(h, axis=-1))
        if self.controller == "mlp":
            return views[0]
        stacked = tf.stack(views, axis=1)  # (B, V, F)
        gate = self._gate(tf.reshape(stacked, [b, -1]))  # (B, V)
        mix = tf.reduce_sum(stacked * gate[..., None], axis=1)
        if training:
            self.step.assign_add(1.0)
        return 0.5 * (1.0 + tf.tanh(self.temperature() * (mix - 0.1)))

    def compute_output_shape(self, embeddings_shape):
        return (embeddings_shape[0], self.num_fields)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_fields=self.num_fields,
            controller=self.controller,
            dropout=self.dropout,
            num_views=self.num_views,
            temperature_step=self.temperature_step,
            max_temperature=self.max_temperature,
            output_layer=self.output_layer,
            score_decay=self.score_decay,
            field_prior=self.field_prior,
        )
        return config
