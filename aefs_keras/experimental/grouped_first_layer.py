"""The first MLP layer grouped by field: research, off the model path.

`fields_matmul` computes `flatten(place_fields(rows, indices, F)) @ kernel`
with a backward pass that touches only the kept fields' kernel blocks. In
the whole training step the plain dense backward pass was faster on a
2-core CPU (docs/scale.md, "The grouped backward pass, measured again"), so
no model uses it; `benchmarks/first_layer.py` and `benchmarks/fill_fold.py`
still time it, and tests/test_fast_path.py checks it against the dense layer.
"""

from __future__ import annotations

import tensorflow as tf

from aefs_keras.ops import _place_fields, _row_field_pairs


def _group_by_field(indices, num_fields):
    """A stable counting sort of the (row, slot) pairs by field.

    Returns `dest` (B*m,), each pair's position when the pairs are grouped
    by field (rows in order within a field), and the pairs per field (F,).
    A field occurs at most once per row, so its rank within its group is the
    number of earlier rows that kept it: an exclusive cumsum over (B, F),
    far cheaper than sorting B*m keys.
    """
    shape = tf.shape(indices)
    kept = tf.scatter_nd(_row_field_pairs(indices), tf.ones(shape, tf.int32),
                         tf.stack([shape[0], num_fields]))
    counts = tf.reduce_sum(kept, 0)
    start = tf.cumsum(counts, exclusive=True)
    rank = tf.gather(tf.cumsum(kept, axis=0, exclusive=True), indices, batch_dims=1)
    return tf.reshape(rank + tf.gather(start, indices), [-1]), counts


def _fields_matmul_grad(upstream, rows, indices, kernel, num_fields):
    """Gradients of `fields_matmul` for rows and kernel, grouped by field."""
    b, m, d = tf.shape(rows)[0], tf.shape(rows)[1], rows.shape[-1]
    dest, counts = _group_by_field(indices, num_fields)
    # The pair at (row r, slot j) goes to position dest[r * m + j].
    order = tf.scatter_nd(dest[:, None], tf.range(b * m), [b * m])
    x = tf.split(tf.gather(tf.reshape(rows, [b * m, d]), order), counts, num=num_fields)
    g = tf.split(tf.gather(upstream, order // m), counts, num=num_fields)
    blocks = tf.reshape(kernel, [num_fields, d, -1])
    d_kernel = tf.stack([tf.matmul(x[f], g[f], transpose_a=True) for f in range(num_fields)])
    d_rows = tf.concat([tf.matmul(g[f], blocks[f], transpose_b=True) for f in range(num_fields)], 0)
    d_rows = tf.gather(d_rows, dest)  # back to (row, slot) order
    return tf.reshape(d_rows, tf.shape(rows)), tf.reshape(d_kernel, tf.shape(kernel))


def fields_matmul(rows, indices, kernel, num_fields: int):
    """`flatten(place_fields(rows, indices, F)) @ kernel`, with a backward
    pass that touches only the kept fields' kernel blocks.

    Not on the model path: in the whole training step the plain dense
    backward pass was faster (docs/scale.md, "The grouped backward pass,
    measured again"); `benchmarks/first_layer.py` still compares the two.

    Args:
        rows: (B, m, d) kept field vectors (m = k, or F while warming up).
        indices: (B, m) their fields, distinct within a row.
        kernel: (F * d, h) a dense layer's kernel, field-major (as a Dense
            layer on the flattened (B, F, d) tensor holds it).
        num_fields: F.

    The forward pass is the dense matmul on the placed rows (on CPU one big
    matmul beats the grouped form: `benchmarks/first_layer.py`). The backward pass groups
    the B*m kept (row, field) pairs by field: for each field f, with X_f its
    n_f kept vectors and G_f the output gradients of their rows,
    dW_f = X_f^T G_f and dX_f = G_f W_f^T: half the multiply-adds of the
    dense backward at k = F/2 and no gradient for the zero blocks.
    """
    indices = tf.cast(indices, tf.int32)
    d = rows.shape[-1]

    @tf.custom_gradient
    def matmul(rows, kernel):
        placed = _place_fields(rows, indices, num_fields)
        out = tf.matmul(tf.reshape(placed, [-1, num_fields * d]), kernel)

        def grad(upstream):
            with tf.name_scope("fields_matmul_grad"):
                return _fields_matmul_grad(upstream, rows, indices, kernel, num_fields)

        return out, grad

    return tf.autograph.experimental.do_not_convert(matmul)(rows, kernel)
