"""The served graph of AEFS at mixed resolution, specialised at export.

`build_model`'s AEFS model (mixed resolution, its fields ranked) keeps the
same `m` fields on every row and chooses the other `r = k - m` per row.
The graph it trains with does not know which fields are fixed (a variable
set in fit), so its served copy runs everything after the selector: the
kept fields are placed into all F slots of the first MLP layer, which then
costs what it costs without selection, and the fixed fields' lookups wait
for a selector that cannot change them.

At export the fixed fields are known, so `MixedServing` computes the same
probability (and `selected_fields`) from the same variables as:

- the fixed fields: looked up and multiplied by their block of the first
  layer's kernel, independent of the selector, so both run side by side;
- the chosen fields: the top r of the candidates' scores, each (row,
  field) pair multiplied by its field's block only (grouped by field with
  `dynamic_partition`: B r pairs, not B F slots; one product with the
  pairs placed into the candidates' slots was no faster in a trial at
  batches of 16 to 512);
- the dropped candidates' fill: their codes times the fill folded into the
  kernel once at export (the per-call fold of `ops.fill_matmul`);
- DeepFM's FM: its sums as extra columns of the same three products;
- the auxiliary table batch-normalised once at export and stored beside
  the first-order weights: one gather for both;
- the "mlp" controller folded (its batch norm into its first Dense, only
  the candidates' score columns, the top r taken on logits: the softmax
  is monotone), two fused products instead of eight ops and a gather.

Core TensorFlow ops only, as every export. `tests/test_serving_mixed.py`
checks the outputs against the Keras model's to 1e-5; `export` falls back
to the Keras model's own graph for any model not of this form.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from aefs_keras.layers.auxiliary_selector import AuxiliarySelector
from aefs_keras.layers.deepfm import DeepFM
from aefs_keras.layers.dnn import DNN
from aefs_keras.layers.dropped_field_fill import DroppedFieldFill
from aefs_keras.layers.wide_deep import WideDeep
from aefs_keras.ops import lookup_fields, scatter_fields, squared_norm

# The MLP backbones whose first operation on the fields is the MLP's first
# layer (plus, for DeepFM, the FM's sums and, with a wide part, the
# first-order sum): what `MixedServing.call` reimplements.
_BACKBONES = (DeepFM, DNN, WideDeep)

# The largest merged auxiliary + first-order table built at export (bytes);
# above it the two tables are read by their own layers.
MERGE_MAX_BYTES = 1 << 30


def mixed_serving_plan(model: keras.Model):
    """(`MixedServing` layer, "") for a model of the specialised form, or
    (None, why not)."""
    why = why_not_specialised(model)
    return (None, why) if why else (MixedServing(model, name=f"{model.name}_mixed_serving"), "")


def why_not_specialised(model: keras.Model) -> str:
    """"" when `model` is served through `MixedServing`, else the reason
    (cheap: nothing is built)."""
    layers = {layer.name: layer for layer in model.layers}
    sel, fill = layers.get("selector"), layers.get("dropped_fill")
    main, backbone = layers.get("main_embedding"), layers.get("backbone")
    if type(sel) is not AuxiliarySelector:
        return "no AEFS selector (AuxiliarySelector) named 'selector'"
    if type(backbone) not in _BACKBONES:
        return f"backbone {type(backbone).__name__} is not one of DeepFM, DNN, WideDeep"
    if not isinstance(fill, DroppedFieldFill) or not fill.factored:
        return "not AEFS at mixed resolution (no factored 'dropped_fill')"
    if backbone.mlp.hidden_units == []:
        return "a backbone without hidden layers"
    if not sel.fixed_field_positions():
        return "no fields fixed on every row yet (ranked during fit)"
    if getattr(main, "field_dims", None) or model.compute_dtype != "float32":
        return "per-field widths or a float type other than float32"
    if not _unscaled_lookup(main):
        return "the kept main embeddings are scaled (single resolution)"
    return ""


def _unscaled_lookup(main) -> bool:
    """True when the main lookup's weights are `ones_like` (mixed
    resolution's unscaled kept fields), as `AEFS.main_weights` builds."""
    nodes = getattr(main, "_inbound_nodes", [])
    if len(nodes) != 1:
        return False
    args = nodes[0].arguments.args
    if len(args) != 3:  # (ids, indices, weights); a warm-up adds inputs
        return False
    history = getattr(args[2], "_keras_history", None)
    return history is not None and type(history.operation).__name__ == "OnesLike"


class MixedServing(keras.layers.Layer):
    """Raw features -> {"probability", "selected_fields"} of an AEFS model
    at mixed resolution, computed as the module docstring says. Built from
    a trained model; the kernel's field blocks and the folded fill are
    copied at construction (an export is a snapshot)."""

    def __init__(self, model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.field_ids = model.get_layer("field_ids")
        self.selector = model.get_layer("selector")
        self.main = model.get_layer("main_embedding")
        self.backbone = model.get_layer("backbone")
        self.linear = model.get_layer("linear_embedding") if self.backbone.uses_linear else None
        fill = model.get_layer("dropped_fill")
        schema = getattr(model, "schema", None)
        self.names = None if schema is None else list(schema.names)
        num_fields, k = self.selector.num_fields, self.selector.k
        self.fixed = self.selector.fixed_field_positions()
        self.candidates = [f for f in range(num_fields) if f not in self.fixed]
        self.r = k - len(self.fixed)
        d = self.main.output_dim
        first = self.backbone.mlp.blocks[0]
        kernel = keras.ops.convert_to_numpy(first.kernel).reshape(num_fields, d, -1)  # (F, d, h)
        weights = np.concatenate([keras.ops.convert_to_numpy(fill.projection),
                                  keras.ops.convert_to_numpy(fill.fill)[:, None]], 1)  # (F, e, d)
        cand = self.candidates
        e, h = weights.shape[1], kernel.shape[-1]
        wc = weights[cand]                                                               # (c, e, d)
        gram = np.zeros((len(cand) * e, len(cand) * e), "float32")  # block-diagonal
        for c in range(len(cand)):
            gram[c * e:(c + 1) * e, c * e:(c + 1) * e] = wc[c] @ wc[c].T
        # DeepFM's FM needs the sum of the kept and filled vectors (B, d) and
        # their squared norms: the sums come out of the same products as
        # extra columns (identity blocks), the fill's squares through each
        # field's Gram matrix W W^T, not from reductions of their own.
        self.fm = isinstance(self.backbone, DeepFM)
        eye = np.eye(d, dtype="float32") if self.fm else np.zeros((d, 0), "float32")
        fill_columns = [np.einsum("fed,fdh->feh", wc, kernel[cand]).reshape(len(cand) * e, h)]
        if self.fm:
            fill_columns.append(wc.reshape(len(cand) * e, d))
        fill_columns = np.concatenate(fill_columns, 1)
        # A code is [a_f, 1] times "dropped": its auxiliary part and its
        # constant part (the dropped mask itself) get their own rows of the
        # kernels, so no (B, c, e) concatenation of ones is made per call.
        aux_rows = [c * e + j for c in range(len(cand)) for j in range(e - 1)]
        one_rows = [c * e + e - 1 for c in range(len(cand))]
        self._constants = {
            "fixed_kernel": np.concatenate([kernel[self.fixed].reshape(len(self.fixed) * d, h),
                                            np.tile(eye, (len(self.fixed), 1))], 1),
            "fill_kernel": fill_columns[aux_rows],
            "fill_one_kernel": fill_columns[one_rows],
            "bias": (keras.ops.convert_to_numpy(first.bias) if first.use_bias else np.zeros(h, "float32")),
        }
        if self.fm:  # code^T G code = a G_aa a + 2 a G_a1 m + m G_11 m, a = the auxiliary part, m = dropped
            self._constants["gram_aux"] = gram[np.ix_(aux_rows, aux_rows)]
            self._constants["gram_cross"] = 2.0 * gram[np.ix_(aux_rows, one_rows)]
            self._constants["gram_one"] = gram[np.ix_(one_rows, one_rows)]
        self._blocks = np.concatenate([kernel[cand], np.broadcast_to(eye, (len(cand),) + eye.shape)], 2)
        self._h = h
        # Plain (B, F) ids: the auxiliary table, batch-normalised once here
        # (the same elementwise ops as the layer's), and the first-order
        # weights side by side in one table: one gather per call, not two
        # plus the normalisation.
        # (Up to MERGE_MAX_BYTES: the copy is made in memory at export,
        # beside the model's own tables.)
        rows = self.selector._embedding.embeddings.shape[0]
        self.merged = (not isinstance(self.field_ids.output, dict) and not self.selector.bag_fields
                       and (self.linear is None or list(self.linear.offsets) == list(self.selector.offsets))
                       and rows * (self.selector.d_aux + 1) * 4 <= MERGE_MAX_BYTES)
        if self.merged:
            aux_table = self.selector._norm(tf.convert_to_tensor(self.selector._embedding.embeddings)[None],
                                            training=False)[0]
            parts = [keras.ops.convert_to_numpy(aux_table)]
            if self.linear is not None:
                parts.append(keras.ops.convert_to_numpy(self.linear.embeddings))
            self._constants["aux_linear"] = np.concatenate(parts, 1)
        self.folded = self._fold_controller()
        self.build()

    def _fold_controller(self) -> bool:
        """The "mlp" controller as two fused products over the candidates:
        its batch norm folded into the first Dense, its output Dense (or,
        without one, the first) cut to the candidates' columns, and no
        softmax. The softmax is monotone, so the top r is the same, except
        where two candidates' float32 softmax values tie while their
        logits differ (the Keras graph then takes the lower field index).
        False (the layer's own call) for "mvfs", whose mix is not."""
        ctrl = self.selector._controller
        if ctrl.controller != "mlp" or not self.r:  # r = 0: no scores needed
            return False
        dense, norm = ctrl._dense[0], ctrl._norm[0]
        as_np = lambda v: keras.ops.convert_to_numpy(v).astype("float64")  # noqa: E731
        kernel, bias = as_np(dense.kernel), as_np(dense.bias)
        scale = 1.0 / np.sqrt(as_np(norm.moving_variance) + norm.epsilon)
        if norm.gamma is not None:
            scale = scale * as_np(norm.gamma)
        shift = -as_np(norm.moving_mean) * scale + (as_np(norm.beta) if norm.beta is not None else 0.0)
        kernel, bias = kernel * scale, bias * scale + shift
        cand = self.candidates
        if ctrl._out:
            out = ctrl._out[0]
            self._constants["score_kernel"] = as_np(out.kernel)[:, cand].astype("float32")
            self._constants["score_bias"] = as_np(out.bias)[cand].astype("float32")
        else:
            kernel, bias = kernel[:, cand], bias[cand]
        self._constants["controller_kernel"] = kernel.astype("float32")
        self._constants["controller_bias"] = bias.astype("float32")
        return True

    def _candidate_scores(self, aux):
        """(B, c): keys whose top r among the candidates is the selector's."""
        if not self.folded:
            scores = self.selector._controller(aux, training=False)
            return tf.gather(scores, tf.constant(self.candidates, tf.int32), axis=1)
        flat = tf.reshape(aux, [-1, aux.shape[1] * aux.shape[2]])
        h = tf.nn.relu(tf.nn.bias_add(tf.matmul(flat, self.controller_kernel.value), self.controller_bias.value))
        if self.selector._controller._out:
            h = tf.nn.bias_add(tf.matmul(h, self.score_kernel.value), self.score_bias.value)
        return h

    def build(self, input_shape=None):
        for name, value in self._constants.items():
            setattr(self, name, self.add_weight(name=name, shape=value.shape, trainable=False,
                                                initializer=keras.initializers.Constant(value)))
        # One variable per field block: slicing one (c, d, h) value per call copies it.
        self.field_kernels = [self.add_weight(name=f"candidate_kernel_{c}", shape=block.shape, trainable=False,
                                              initializer=keras.initializers.Constant(block))
                              for c, block in enumerate(self._blocks)]
        self.own_weights = [getattr(self, name) for name in self._constants] + self.field_kernels
        self._constants = self._blocks = None

    def _aux_and_linear(self, ids):
        """(normalised auxiliary embeddings (B, F, d_aux), first-order
        weights (B, F, 1) or None)."""
        sel = self.selector
        if not self.merged:
            aux = sel._norm(sel._embedding(ids), training=False)
            return aux, None if self.linear is None else self.linear(ids)
        rows = lookup_fields(self.aux_linear.value, sel.offsets, ids)
        return rows[..., :sel.d_aux], None if self.linear is None else rows[..., sel.d_aux:]

    def call(self, features, training=None):
        ids = self.field_ids(features)
        aux, linear = self._aux_and_linear(ids)                           # (B, F, d_aux)
        fixed_rows = self.main._lookup(ids, self.fixed)                   # (B, m, d): no selector needed
        x = tf.matmul(tf.reshape(fixed_rows, [-1, fixed_rows.shape[1] * fixed_rows.shape[2]]),
                      self.fixed_kernel.value)
        batch = tf.shape(fixed_rows)[0]
        n = len(self.candidates)
        candidates = tf.constant(self.candidates, tf.int32)
        fixed = tf.broadcast_to(tf.constant(self.fixed, tf.int32)[None], tf.stack([batch, len(self.fixed)]))
        aux_c = tf.gather(aux, candidates, axis=1)                       # (B, c, d_aux)
        dropped = tf.ones(tf.stack([batch, n]), aux_c.dtype)             # (B, c)
        rows = [fixed_rows]
        if self.r:
            # The same top r as the selector's top k over scores lifted at the fixed fields.
            _, top = tf.math.top_k(self._candidate_scores(aux), k=self.r, sorted=False)
            chosen = tf.gather(candidates, top)                           # (B, r) field positions
            chosen_rows = self.main._lookup(ids, chosen)                 # (B, r, d)
            rows.append(chosen_rows)
            x = x + self._grouped(chosen_rows, top)
            dropped = 1.0 - scatter_fields(tf.ones(tf.shape(top), aux_c.dtype), top, n)
            indices = tf.sort(tf.concat([fixed, chosen], 1), axis=-1)
        else:
            indices = fixed
        codes = tf.reshape(aux_c * dropped[..., None], [-1, n * aux_c.shape[-1]])  # (B, c * d_aux)
        fill = tf.matmul(codes, self.fill_kernel.value) + tf.matmul(dropped, self.fill_one_kernel.value)
        h = self._h
        acc = x + fill  # the first layer's input sums (and the FM's sum of vectors)
        x = tf.nn.bias_add(acc[:, :h], self.bias.value)
        for layer in self.backbone.mlp.blocks[1:]:
            x = layer(x, training=False)
        logit = self.backbone.head(x)
        if self.fm:
            total = acc[:, h:]
            fill_squares = (tf.reduce_sum(tf.matmul(codes, self.gram_aux.value) * codes, -1)
                            + tf.reduce_sum((tf.matmul(codes, self.gram_cross.value)
                                             + tf.matmul(dropped, self.gram_one.value)) * dropped, -1))
            squares = tf.add_n([squared_norm(tf.reshape(r, [-1, r.shape[1] * r.shape[2]]), axis=1) for r in rows]
                               + [fill_squares])
            logit = logit + 0.5 * (tf.reduce_sum(tf.square(total), -1, keepdims=True) - squares[:, None])
        if linear is not None:
            logit = logit + self.backbone.linear_logit(linear)
        out = {"probability": tf.sigmoid(logit), "selected_fields": indices}
        if self.names is not None:
            out["selected_field_names"] = tf.gather(tf.constant(self.names), indices)
        return out

    def _grouped(self, chosen_rows, top):
        """sum_j chosen_rows[b, j] @ kernel[field of (b, j)] -> (B, h): the
        pairs grouped by candidate field, one matmul per field."""
        d = chosen_rows.shape[-1]
        flat = tf.reshape(chosen_rows, [-1, d])
        which = tf.reshape(top, [-1])
        n = len(self.candidates)
        parts = tf.dynamic_partition(flat, which, n)
        positions = tf.dynamic_partition(tf.range(tf.shape(which)[0]), which, n)
        products = [tf.matmul(p, w.value) for p, w in zip(parts, self.field_kernels)]
        stitched = tf.dynamic_stitch(positions, products)                # (B * r, h)
        return tf.reduce_sum(tf.reshape(stitched, [-1, self.r, stitched.shape[-1]]), 1)
