"""CTRModel: a functional Keras model that knows its schema and auxiliary head."""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from aefs_keras.inputs import check_labels, model_inputs, row_count
from aefs_keras.schema import as_schema


def _feature_dtypes(x):
    """Feature name -> dtype for dict inputs and tf.data datasets, else None."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        if isinstance(spec, dict):
            return {k: v.dtype for k, v in spec.items()}
        return None
    if isinstance(x, dict):
        out = {}
        for name, value in x.items():
            if isinstance(value, (tf.Tensor, tf.Variable)):
                out[name] = value.dtype
                continue
            arr = np.asarray(value)
            out[name] = tf.string if arr.dtype.kind in "USO" else tf.as_dtype(arr.dtype)
        return out
    return None


def _per_replica_logs(logs):
    # Keras (3.15) averages each step's logs over workers with
    # strategy.reduce("MEAN", v, axis=0), which fails on scalars under
    # MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388). A (1,) view
    # of each value reduces to the same scalar.
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {k: tf.reshape(v, [1]) if getattr(v, "shape", None) is not None and v.shape.rank == 0 else v
                for k, v in logs.items()}
    return logs


@keras.saving.register_keras_serializable(package="aefs_keras")
class CTRModel(keras.Model):
    """A functional model whose output is the main click probability.

    Built like any functional model. `outputs` is either the probability
    tensor (B, 1), or a dict with `probability` and `aux_probability`
    (AEFS's small prediction head); then the loss adds
    `aux_loss_weight * BCE(aux_probability, y)` (tracked as `aux_loss`),
    metrics see only the main probability, and `predict` returns only it.

    Args:
        inputs, outputs: as for `keras.Model`.
        schema: the `aefs_keras.Schema` of the inputs; `fit`, `evaluate`
            and `predict` then reject missing features and wrong dtypes
            (Keras alone would cast a float 1.7 fed as an id to 1).
        aux_loss_weight: weight of the auxiliary BCE (lambda_a, default 1).
    """

    def __init__(self, *args, schema=None, aux_loss_weight=1.0, **kwargs):
        outputs = kwargs.get("outputs", args[1] if len(args) > 1 else None)
        if isinstance(outputs, dict) and "probability" not in outputs:
            raise ValueError(
                "A dict `outputs` of CTRModel needs a 'probability' entry. "
                f"Received keys: {sorted(outputs)}"
            )
        super().__init__(*args, **kwargs)
        self.schema = as_schema(schema) if schema is not None else None
        self.aux_loss_weight = float(aux_loss_weight)
        self._has_aux = isinstance(outputs, dict) and "aux_probability" in outputs
        if self._has_aux:
            self.aux_loss_tracker = keras.metrics.Mean(name="aux_loss")

    # -- input checks ----------------------------------------------------
    def check_inputs(self, x):
        """Raise ValueError if `x` lacks a schema feature or has a wrong dtype."""
        if self.schema is None:
            return
        dtypes = _feature_dtypes(x)
        if dtypes is not None:
            self.schema.check_feature_dtypes(dtypes)

    def fit(self, x=None, y=None, *args, **kwargs):
        x = model_inputs(self.schema, x)
        self._check_labels(x, y)
        self.check_inputs(x)
        if row_count(x) == 0:
            raise ValueError("`x` has 0 rows: nothing to train on.")
        if isinstance(x, tf.data.Dataset) and not args:
            # A dataset is shuffled by its own pipeline; Keras' default
            # shuffle=True would only warn that it ignores it.
            kwargs.setdefault("shuffle", False)
        if isinstance(x, tf.data.Dataset) and x.cardinality() == tf.data.UNKNOWN_CARDINALITY:
            # A file pipeline's length is learnt at the end of its first
            # epoch, which Keras reports as "input ran out of data".
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                return self._checked_fit(x, y, *args, **kwargs)
        return self._checked_fit(x, y, *args, **kwargs)

    def _checked_fit(self, x, y, *args, **kwargs):
        data = kwargs.get("validation_data")
        if isinstance(data, tuple):
            kwargs["validation_data"] = data = (model_inputs(self.schema, data[0]), *data[1:])
            self.check_inputs(data[0])
            if len(data) > 1:
                check_labels(data[1], "validation_data's labels")
        elif isinstance(data, tf.data.Dataset):
            kwargs["validation_data"] = data = model_inputs(self.schema, data)
            self.check_inputs(data)
        self._add_ranking(x, y, kwargs)
        return super().fit(x, y, *args, **kwargs)

    def _add_ranking(self, x, y, kwargs):
        """AEFS at mixed resolution ranks its fixed fields during this fit:
        add `RankFields` (on the validation rows, else the training rows)
        unless the caller gave one."""
        from aefs_keras.callbacks import RankFields
        from aefs_keras.serving import selector_of

        sel = selector_of(self)
        if sel is None or not getattr(sel, "needs_ranking", False):
            return
        callbacks = list(kwargs.get("callbacks") or [])
        if any(isinstance(c, RankFields) for c in callbacks):
            return
        data = kwargs.get("validation_data")
        if data is None:
            data = x if y is None else (x, y)
        callbacks.append(RankFields(data, verbose=int(kwargs.get("verbose", "auto") not in (0, "0"))))
        kwargs["callbacks"] = callbacks

    def evaluate(self, x=None, y=None, *args, **kwargs):
        x = model_inputs(self.schema, x)
        self._check_labels(x, y)
        self.check_inputs(x)
        if row_count(x) == 0:
            raise ValueError("`x` has 0 rows: no metric is defined on no rows.")
        return super().evaluate(x, y, *args, **kwargs)

    @staticmethod
    def _check_labels(x, y):
        """Labels given as arrays (`y`) must be there and be click labels. A
        dataset's labels are not checked: inside the step XLA drops the
        assertion, and in its pipeline a `map` over every batch slowed `fit`
        (benchmarks/label_check.py); the file readers make 0/1 labels."""
        if y is None and isinstance(x, dict):
            raise ValueError("`y` is missing: training and evaluation need one click label per row "
                             "(or a dataset of (features, labels)).")
        check_labels(y)

    def predict(self, x, *args, **kwargs):
        x = model_inputs(self.schema, x)
        self.check_inputs(x)
        if row_count(x) == 0:
            return np.zeros((0, 1), "float32")
        try:
            with warnings.catch_warnings():
                if kwargs.get("steps") is None:  # then running out is the input's end, not a fault
                    warnings.filterwarnings("ignore", message="Your input ran out of data")
                return super().predict(x, *args, **kwargs)
        except UnboundLocalError:
            # Keras (3.15) ends its predict loop on an unset name when the
            # input yields no batch at all: an empty dataset, 0 rows.
            return np.zeros((0, 1), "float32")

    # -- training --------------------------------------------------------
    def train_step(self, data):
        return _per_replica_logs(super().train_step(data))

    def test_step(self, data):
        return _per_replica_logs(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) takes the first distributed batch and averages it over
        # replicas with strategy.reduce, only to learn its shapes;
        # MultiWorkerMirroredStrategy cannot reduce a dict of string and
        # integer features. One replica's local part gives the same shapes.
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None:
            return self._build_before_tracing(data_batch)
        if iterator is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v,
                next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=batch)

    def _build_before_tracing(self, data_batch=None):
        # Without a distribution strategy Keras (3.15) builds the optimizer,
        # the compiled loss and the metrics inside the first trace of its
        # train function; a tf.function that creates variables is traced
        # twice (benchmarks/first_step.py). Built here, from the model's own
        # input specs (no batch is taken from the data), it is traced once.
        if not self.built or not self.inputs:
            return None
        if data_batch is None:
            data_batch = (self._inputs_struct, keras.KerasTensor((None, 1), "float32"), None)
        return self._symbolic_build(data_batch=data_batch)

    @staticmethod
    def _main(y_pred):
        return y_pred["probability"] if isinstance(y_pred, dict) else y_pred

    @staticmethod
    def _labels_like(y, p):
        # Labels usually come as (B,); the probability is (B, 1). A step
        # retraced for labels of another rank than before ((B, 1), then (B,))
        # gets them with an unknown rank (tf.function's relaxed shapes).
        if y is None or len(p.shape) != 2:
            return y
        rank = y.shape.rank if isinstance(y.shape, tf.TensorShape) else len(y.shape)
        if rank is None:
            return tf.reshape(y, tf.shape(p))
        return tf.expand_dims(y, -1) if rank == 1 else y

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        main = self._main(y_pred)
        loss = super().compute_loss(x, self._labels_like(y, main), main, sample_weight, training)
        if self._has_aux and isinstance(y_pred, dict) and y is not None:
            p_aux = y_pred["aux_probability"]
            labels = tf.reshape(tf.cast(y, p_aux.dtype), tf.shape(p_aux))
            per_row = keras.losses.binary_crossentropy(labels, p_aux)
            if sample_weight is not None:
                w = tf.reshape(tf.cast(sample_weight, per_row.dtype), tf.shape(per_row))
                aux = tf.reduce_sum(per_row * w) / tf.maximum(tf.reduce_sum(w), 1e-12)
            else:
                aux = tf.reduce_mean(per_row)
            self.aux_loss_tracker.update_state(aux)
            # Keras scales its own losses by 1 / replicas so that the summed
            # replica gradients are the global mean; do the same.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = loss + self.aux_loss_weight * aux / replicas
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        main = self._main(y_pred)
        return super().compute_metrics(x, self._labels_like(y, main), main, sample_weight)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._main(self(x, training=False))

    # -- reporting -------------------------------------------------------
    def activated_embedding_parameters(self) -> int:
        """Embedding values read per example (see `aefs_keras.efficiency`)."""
        from aefs_keras.efficiency import activated_embedding_parameters

        return activated_embedding_parameters(self)

    # -- serialization ---------------------------------------------------
    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, written whole: a crash or a full disk mid-save
        leaves the previous file (or none), never half of one."""
        from aefs_keras.files import written_whole

        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and not optimizer.built and self.built:
            # A compiled model that has not trained saves 2 optimizer variables;
            # Keras builds the optimizer in full on load and then warns that it
            # skipped them. Built now, file and load agree.
            with self.distribute_strategy.scope():
                optimizer.build(self.trainable_variables)
        path = os.fspath(filepath)
        if not path.endswith(".keras") or (not overwrite and os.path.exists(path)):
            return super().save(filepath, overwrite=overwrite, **kwargs)  # Keras' own answer
        with written_whole(path, suffix=".keras") as tmp:
            super().save(tmp, overwrite=True, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["schema"] = self.schema.get_config() if self.schema is not None else None
        config["aux_loss_weight"] = self.aux_loss_weight
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        schema = config.pop("schema", None)
        aux_loss_weight = config.pop("aux_loss_weight", 1.0)
        model = super().from_config(config, custom_objects=custom_objects)
        model.schema = as_schema(schema) if schema is not None else None
        model.aux_loss_weight = float(aux_loss_weight)
        return model
