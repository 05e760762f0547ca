"""Small tensor functions shared by the selection layers."""

from __future__ import annotations

import tensorflow as tf


def hard_top_k(scores, k: int, reweight: bool = True, scale: float = 1.0, rank_by=None):
    """Per-row hard top-k over field scores.

    Args:
        scores: (B, F) non-negative field scores.
        k: fields kept per row.
        reweight: renormalise the kept scores to sum to 1 per row.
        scale: multiply the weights by this (k makes re-weighted weights
            average 1, so a kept field's embedding keeps its size).
        rank_by: (B, F) keys that choose the kept fields (default `scores`);
            the weights are still the kept fields' scores.

    Returns:
        indices (B, k) int32 sorted ascending, weights (B, k) and the mask
        (B, F) holding the weights at the kept fields and 0 elsewhere.
        Gradients reach `scores` only through the kept values.
    """
    num_fields = scores.shape[-1]
    _, top = tf.math.top_k(scores if rank_by is None else rank_by, k=k, sorted=False)
    indices = tf.sort(top, axis=-1)
    weights = tf.gather(scores, indices, batch_dims=1)
    if reweight:
        weights = weights / (tf.reduce_sum(weights, -1, keepdims=True) + 1e-12)
    if scale != 1.0:
        weights = weights * scale
    mask = scatter_fields(weights, indices, num_fields)
    return indices, weights, mask


def _row_field_pairs(indices):
    """(B, m, 2): [row, field] of every kept (row, slot), for scatter_nd."""
    shape = tf.shape(indices)
    return tf.stack([tf.broadcast_to(tf.range(shape[0])[:, None], shape), indices], axis=-1)


def scatter_fields(values, indices, num_fields: int):
    """Place per-row values (B, k, ...) at field positions -> (B, F, ...).

    Positions not in `indices` are zero. Differentiable in `values`.
    """
    indices = tf.cast(indices, tf.int32)
    shape = tf.shape(indices)
    where = _row_field_pairs(indices)
    out_shape = tf.concat(
        [[shape[0], num_fields], tf.shape(values)[2:]], axis=0
    )
    return tf.scatter_nd(where, values, out_shape)


def field_sums(embeddings):
    """(sum over fields (B, d), sum of squared entries (B,)) of `embeddings`
    (B, F, d): the two sums of the FM, without the (B, F, d) square.

    TF's own gradient of `reduce_sum(square(e))` and `reduce_sum(e, 1)` writes
    several (B, F, d) temporaries (the square, two broadcasts, their
    products and sum); this one writes dE = g_sum + 2 g_squares e at once.
    The squares come from `squared_norm`, which reads e once.
    """
    @tf.custom_gradient
    def sums(e):
        total = tf.reduce_sum(e, axis=1)
        squares = squared_norm(tf.reshape(e, [tf.shape(e)[0], -1]), axis=1)

        def grad(g_total, g_squares):
            g_total = tf.zeros_like(total) if g_total is None else g_total
            g_squares = tf.zeros_like(squares) if g_squares is None else g_squares
            return e * (2.0 * g_squares)[:, None, None] + g_total[:, None, :]

        return (total, squares), grad

    return tf.autograph.experimental.do_not_convert(sums)(embeddings)


def squared_norm(x, axis=None):
    """sum(x^2) over `axis`: from the Euclidean-norm reduction, which reads x
    once (a sum of squares first writes the square), except under XLA, which
    has no kernel for it (and fuses the sum of squares)."""
    if _in_xla_context():
        return tf.reduce_sum(tf.square(x), axis=axis)
    return tf.square(tf.math.reduce_euclidean_norm(x, axis=axis))


def _in_xla_context() -> bool:
    """True while tracing a function compiled with XLA (`jit_compile=True`)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # a TensorFlow without the module: assume the plain path
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


# --- The compact fast path -------------------------------------------------
#
# With early selection each row keeps k of F fields. The "scattered" form puts
# the k kept vectors into a zero-filled (B, F, d) tensor so that any backbone
# can take it; the functions below compute the same results from the compact
# (B, m, d) rows and their field indices (B, m). m is k, or F while a
# selector warms up, so nothing here relies on m being static.


def place_fields(values, indices, num_fields: int):
    """Exactly `scatter_fields(values, indices, num_fields)`, computed with a
    gather, and differentiated with a gather.

    `values` (B, m, ...) are the rows of the fields `indices` (B, m) (distinct
    within a row); the result is (B, F, ...) with zeros elsewhere. The
    forward pass gathers from the rows padded with one zero vector, which
    `benchmarks/first_layer.py` times against `tf.scatter_nd`; the gradient
    is a gather of the kept positions, stated with `custom_gradient`.
    """
    return _place_fields(values, tf.cast(indices, tf.int32), num_fields)


def _place_fields(values, indices, num_fields):
    @tf.custom_gradient
    def place(values):
        idx = tf.identity(indices)  # as `values` below
        shape = tf.shape(idx)
        # slot[b, f] = 1 + the position of field f among row b's kept fields,
        # 0 where f is not kept; position 0 of `padded` is a zero vector.
        slot = tf.scatter_nd(_row_field_pairs(idx),
                             tf.broadcast_to(tf.range(1, shape[1] + 1)[None], shape),
                             tf.stack([shape[0], num_fields]))
        pad = [[0, 0], [1, 0]] + [[0, 0]] * (values.shape.rank - 2)
        out = tf.gather(tf.pad(values, pad), slot, batch_dims=1)
        out.set_shape([values.shape[0], num_fields, *values.shape[2:]])

        def grad(upstream):
            return tf.gather(upstream, idx, batch_dims=1)

        return out, grad

    # tf.identity: a tensor of this graph, so that inside a `tf.cond` branch
    # the custom gradient reads the branch's own tensors only.
    return tf.autograph.experimental.do_not_convert(place)(tf.identity(values))


def assemble_fields(values, indices, fill_by_field):
    """Exactly `place_fields(values, indices, F)` with `fill_by_field`'s
    vectors in place of the zeros: out[b, f] = values[b, j] where
    indices[b, j] = f, else fill_by_field[f, b].

    The fill is field-major (F, B, d), the layout a per-field matmul writes,
    so no (B, F, d) transpose is made: one gather assembles the output, and
    the gradient is one gather back (each source row feeds at most one
    output row). `DroppedFieldFill`'s auxiliary fill uses it
    (`benchmarks/fill_speed.py` times the two paths).
    """
    return _assemble_fields(values, tf.cast(indices, tf.int32), fill_by_field)


def _assemble_fields(values, indices, fill_by_field):
    num_fields, d = fill_by_field.shape[0], values.shape[-1]
    shape = tf.shape(indices)
    b, m = shape[0], shape[1]
    # Source rows: the fill (field-major, f * B + b), then the kept values
    # (b * m + j). where[b * F + f] is the source row of output (b, f).
    slot = tf.scatter_nd(_row_field_pairs(indices), tf.reshape(tf.range(1, b * m + 1), shape),
                         tf.stack([b, num_fields]))
    fill_row = tf.range(num_fields)[None] * b + tf.range(b)[:, None]
    where = tf.reshape(tf.where(slot > 0, num_fields * b + slot - 1, fill_row), [-1])
    sources = num_fields * b + b * m
    # inverse[s] = the output row source s feeds, or B * F (a zero row) if none.
    inverse = tf.tensor_scatter_nd_update(tf.fill([sources], b * num_fields), where[:, None],
                                          tf.range(b * num_fields))

    @tf.custom_gradient
    def assemble(fill_by_field, values):
        table = tf.concat([tf.reshape(fill_by_field, [-1, d]), tf.reshape(values, [-1, d])], 0)
        out = tf.reshape(tf.gather(table, where), tf.stack([b, num_fields, d]))

        def grad(upstream):
            padded = tf.concat([tf.reshape(upstream, [-1, d]), tf.zeros([1, d], upstream.dtype)], 0)
            g = tf.gather(padded, inverse)
            return (tf.reshape(g[:num_fields * b], tf.shape(fill_by_field)),
                    tf.reshape(g[num_fields * b:], tf.shape(values)))

        return out, grad

    out = tf.autograph.experimental.do_not_convert(assemble)(fill_by_field, values)
    out.set_shape([values.shape[0], num_fields, d])
    return out


# --- Fields that every row of a batch keeps ---------------------------------
# With fields fixed on every row (AEFS at mixed resolution), most of a row's
# k kept fields are the same in every row. Their part of the first layer is
# then one dense product with only their kernel blocks, and only the rest
# of each row (the fields chosen per row) needs grouping by field: about k / F
# of the dense layer's multiply-adds, forward and backward, instead of all F.


# Where the split pays on a 2-core CPU (`benchmarks/first_layer.py --split`,
# benchmarks/results/first_layer_split.json: F = 39, 14 common fields + 5
# per row, d x h of the first layer 64 x 400, 32 x 400 and 32 x 64): its
# fixed costs (the grouping, a product per field) must be paid back by the
# dense layer's work per field slot, rows x d x h. Forward + backward, split
# / dense was 0.74x and 0.90x at 512 rows with h 400, 0.88x at 1024 rows
# with h 64 (2^21), 0.65-0.77x at 4096, and 1.03-1.39x below those; the
# forward pass alone 0.94x at 512 rows at 64 x 400 (2^23), 0.77-0.96x at
# 4096, and up to 1.8x at small batches.
# A first layer so small that the split would pay only beyond
# SPLIT_MIN_BATCH rows is not given the split at all: its ops (a few per
# field, forward and backward) make every trace of the step larger. At the
# accuracy grid's 32 x 64 (from 1024 rows) the whole AEFS step was level with
# and without it (scale_aefs_grid_size_ab_*.json), while it doubled the first
# step's cost (benchmarks/first_step.py).
SPLIT_MIN_BATCH = 512
SPLIT_MIN_WORK_TRAINING = 2 ** 21
SPLIT_MIN_WORK = 2 ** 23


def split_min_batch(dim: int, units: int, training) -> int:
    """Rows from which `kept_fields_matmul` splits a first layer of
    `dim`-wide fields and `units` outputs: at least `SPLIT_MIN_BATCH`, and
    enough for `SPLIT_MIN_WORK_TRAINING` (a training step, whose backward
    pass gains most) or `SPLIT_MIN_WORK` multiply-adds per field slot."""
    work = SPLIT_MIN_WORK_TRAINING if training else SPLIT_MIN_WORK
    return max(SPLIT_MIN_BATCH, -(-int(work) // (int(dim) * int(units))))


def placed_matmul(placed, kernel):
    """flatten(placed (B, F, d)) @ kernel (F d, h): the dense first layer."""
    shape = placed.shape
    return tf.matmul(tf.reshape(placed, [-1, shape[1] * shape[2]]), kernel)


def kept_fields_matmul(rows, indices, kernel, num_fields: int, fill=None, training=False):
    """`flatten(place_fields(rows, indices, F)) @ kernel`, plus
    `fill_matmul(*fill, kernel)` when `fill` is given (a factored fill,
    whose codes are zero at each row's kept fields).

    Where the fields that every row of the batch keeps are at least half of
    each row's fields (and fewer than F), it is computed split: those
    fields' rows times their kernel blocks as one dense product, and each
    remaining (row, field) pair times its own field's block, grouped by
    field (`_split_matmul`); the fill then needs only the other fields.
    Otherwise (below `split_min_batch(d, h, training)` rows, for a layer
    that would need more than `SPLIT_MIN_BATCH`, and under XLA, which
    needs static shapes) the rows are placed and multiplied densely.
    The same values and gradients either way (tests/test_fast_path.py), up
    to the order of float sums.
    """
    indices = tf.cast(indices, tf.int32)
    kernel = tf.convert_to_tensor(kernel)

    def dense():
        out = placed_matmul(place_fields(rows, indices, num_fields), kernel)
        return out if fill is None else out + fill_matmul(*fill, kernel)

    min_batch = split_min_batch(rows.shape[-1], kernel.shape[-1], training)
    if _in_xla_context() or min_batch > SPLIT_MIN_BATCH:
        return dense()
    pays, common = split_pays(indices, num_fields, min_batch)

    def split():
        out = _split_matmul(rows, indices, kernel, num_fields, common)
        if fill is None:
            return out
        rest = tf.cast(tf.where(tf.logical_not(common))[:, 0], tf.int32)
        return out + fill_matmul(*fill, kernel, fields=rest)

    return tf.cond(pays, split, dense)


def split_pays(indices, num_fields: int, min_batch: int = 1):
    """(scalar bool, (F,) bool): whether `kept_fields_matmul` computes this
    batch split (at least `min_batch` rows and at least one, the fields
    every row keeps at least half of each row's, and fewer than F fields a
    row), and those fields."""
    indices = tf.cast(indices, tf.int32)
    common = common_fields(indices, num_fields)
    shape = tf.shape(indices)
    m = tf.reduce_sum(tf.cast(common, tf.int32))
    enough = shape[0] >= max(int(min_batch), 1)
    pays = tf.logical_and(tf.logical_and(enough, 2 * m >= shape[1]), shape[1] < num_fields)
    return pays, common


def common_fields(indices, num_fields: int):
    """(F,) bool: the fields that every row of `indices` (B, m) keeps (the
    fields of a row are distinct)."""
    indices = tf.cast(indices, tf.int32)
    counts = tf.math.bincount(indices, minlength=num_fields, maxlength=num_fields)
    return tf.equal(counts, tf.shape(indices)[0])


def _split_matmul(rows, indices, kernel, num_fields, common):
    """`flatten(place_fields(rows, indices, F)) @ kernel` for a batch whose
    rows all keep the fields `common` (F,) bool: those fields as one (B, m d)
    x (m d, h) product, the other c = k - m pairs of each row grouped by
    field (one (n_f, d) x (d, h) product per field, a segment sum per row).
    The backward pass mirrors it: the common blocks' gradient from one
    product, each other block's from its own pairs only (zero for a block
    no pair used); both gradients are assembled by one `dynamic_stitch`."""
    d = rows.shape[-1]
    shape = tf.shape(indices)
    b, k = shape[0], shape[1]
    common_ids = tf.cast(tf.where(common)[:, 0], tf.int32)  # (m,)
    m = tf.shape(common_ids)[0]
    # Rows of the flattened (B * k, d) input: `at[b, f]` is where row b
    # holds field f (a segment sum of the unique (row, field) keys, where a
    # first version's three `ScatterNd`s were among its slowest ops).
    flat = tf.reshape(tf.range(b)[:, None] * num_fields + indices, [-1])
    at = tf.reshape(tf.math.unsorted_segment_sum(tf.range(1, b * k + 1), flat, b * num_fields),
                    tf.stack([b, num_fields])) - 1
    common_at = tf.reshape(tf.gather(at, common_ids, axis=1), [-1])  # (B * m,), field order in each row
    own = tf.logical_not(tf.reshape(tf.gather(common, indices), [-1]))
    own_at = tf.boolean_mask(tf.range(b * k), own)  # (B * c,)
    own_fields = tf.boolean_mask(tf.reshape(indices, [-1]), own)
    own_rows = tf.boolean_mask(tf.reshape(tf.broadcast_to(tf.range(b)[:, None], shape), [-1]), own)
    part_at = tf.dynamic_partition(own_at, own_fields, num_fields)
    part_size = [tf.shape(p)[0] for p in part_at]
    row_of = tf.concat(tf.dynamic_partition(own_rows, own_fields, num_fields), 0)  # grouped by field
    every_field = [tf.constant([f]) for f in range(num_fields)]

    @tf.custom_gradient
    def product(rows, kernel):
        blocks = tf.reshape(kernel, [num_fields, d, -1])
        flat_rows = tf.reshape(rows, [-1, d])
        x_common = tf.reshape(tf.gather(flat_rows, common_at), tf.stack([b, m * d]))
        k_common = tf.reshape(tf.gather(blocks, common_ids), tf.stack([m * d, -1]))
        x_own = [tf.gather(flat_rows, p) for p in part_at]
        y_own = tf.concat([tf.matmul(x_own[f], blocks[f]) for f in range(num_fields)], 0)
        out = tf.matmul(x_common, k_common) + tf.math.unsorted_segment_sum(y_own, row_of, b)

        def grad(upstream):
            g = tf.split(tf.gather(upstream, row_of), part_size, num=num_fields)
            d_common = tf.reshape(tf.matmul(upstream, k_common, transpose_b=True), [-1, d])
            d_rows = tf.dynamic_stitch([common_at] + part_at, [d_common] + [
                tf.matmul(g[f], blocks[f], transpose_b=True) for f in range(num_fields)])
            # Blocks of common fields: zeros from the per-field list (no
            # pairs), then overwritten by the common product (stitched last).
            d_blocks = tf.dynamic_stitch(every_field + [common_ids], [
                tf.matmul(x_own[f], g[f], transpose_a=True)[None] for f in range(num_fields)] + [
                tf.reshape(tf.matmul(x_common, upstream, transpose_a=True), tf.stack([m, d, -1]))])
            return tf.reshape(d_rows, tf.shape(rows)), tf.reshape(d_blocks, tf.shape(kernel))

        return out, grad

    # tf.identity: tensors of this graph (a `tf.cond` branch), see `place_fields`.
    out = tf.autograph.experimental.do_not_convert(product)(tf.identity(rows), tf.identity(kernel))
    out.set_shape([rows.shape[0], kernel.shape[-1]])
    return out


# --- Fields filled at low rank ---------------------------------------------
# The mixed form fills each field f that row b dropped with
# codes[b, f] @ weights[f]: codes (B, F, e) are the field's auxiliary
# embedding with a constant 1 appended (zeros where the row kept f), weights
# (F, e, d) the projection P_f with the fill vector m_f as its last row. A
# backbone whose first operation on the fields is linear (an MLP's first
# layer, the FM's sums) can take the fill in this factored form and never
# build the (B, F, d) tensor.


def fill_vectors(codes, weights):
    """(B, F, d): every field's fill, codes[b, f] @ weights[f]."""
    return tf.einsum("bfe,fed->bfd", codes, weights)


def fill_matmul(codes, weights, kernel, fields=None):
    """`flatten(fill_vectors(codes, weights)) @ kernel` without the (B, F, d)
    fill: the kernel's field blocks are folded into the weights first
    ((F, e, h), F * e * d * h multiply-adds per step, not per row), then one
    (B, F * e) x (F * e, h) matmul: e / d of the dense layer's work.
    `fields` (n,): only these fields' fills (the others' codes are zero)."""
    num_fields, e, d = weights.shape
    blocks = tf.reshape(kernel, [num_fields, d, -1])
    if fields is not None:
        codes, weights, blocks = tf.gather(codes, fields, axis=1), tf.gather(weights, fields), tf.gather(blocks, fields)
    folded = tf.einsum("fed,fdh->feh", weights, blocks)
    n = num_fields if fields is None else tf.shape(fields)[0]
    out = tf.matmul(tf.reshape(codes, [-1, n * e]), tf.reshape(folded, [n * e, kernel.shape[-1]]))
    out.set_shape([codes.shape[0], kernel.shape[-1]])
    return out


def fill_sums(codes, weights):
    """The sum over fields of the fill vectors (B, d) and the sum of their
    squared norms (B,), from the codes: the norms through each field's
    Gram matrix weights[f] weights[f]^T (e x e)."""
    total = tf.einsum("bfe,fed->bd", codes, weights)
    gram = tf.matmul(weights, weights, transpose_b=True)
    squares = tf.reduce_sum(tf.einsum("bfe,feg->bfg", codes, gram) * codes, [1, 2])
    return total, squares


def warmup_fields(indices, weights, warmup_weights, warming, num_fields: int, dtype):
    """The fields the main model reads on a training step: every field at its
    soft score `warmup_weights` (B, F) while `warming` (B,) is set, else the
    kept `indices` (B, k) at `weights` (ones when None). Only integer ids and
    weights go through the `tf.cond`: the table is read by one gather after
    it, so its gradient stays IndexedSlices (B * F rows, then B * k)."""
    indices = tf.cast(indices, tf.int32)
    hard = tf.ones(tf.shape(indices), dtype) if weights is None else tf.cast(weights, dtype)
    every = tf.broadcast_to(tf.range(num_fields)[None], tf.shape(warmup_weights))
    return tf.cond(tf.reduce_any(warming > 0.5),
                   lambda: (every, tf.cast(warmup_weights, dtype)),
                   lambda: (indices, hard))


# --- Lookups of multi-valued and valued fields ------------------------------


def lookup_fields(table, offsets, fields, indices=None, bag_fields=(), include=None):
    """Rows of `table` for each example's fields (all F, or the k at
    `indices`), one vector per field, reading only those fields' ids.

    Args:
        table: (rows, d) embedding table (its value: the gradient is
            `IndexedSlices` over the rows read).
        offsets: (F,) first row of each field.
        fields: ids (B, F), or `FieldIds`' dict: `ids`, `values` (B, F)
            multipliers, and for the multi-valued fields at the static
            positions `bag_fields` their `bag_ids` (B, M, L) (-1: padding)
            and `bag_weights` (B, M, L).
        indices: (B, k) fields to look up, or None for all F in order, or
            a list of field positions (the same for every row).
        include: F booleans: the fields this table holds (default all);
            the others give zero vectors and read nothing.

    Returns (B, k or F, d): a field's row times its value, or for a
    multi-valued field the weighted sum of its values' rows (zeros for an
    empty list).
    """
    if not isinstance(fields, dict):
        fields = {"ids": fields}
    ids = tf.cast(fields["ids"], tf.int32)
    if isinstance(indices, (list, tuple)):  # static positions: a gather along the fields
        positions = [int(f) for f in indices]
        values = fields.get("values")
        rows = tf.gather(ids, positions, axis=1) + tf.constant([int(offsets[f]) for f in positions], tf.int32)
        if values is not None:
            values = tf.gather(values, positions, axis=1)
        if not set(positions) & set(bag_fields):
            out = tf.gather(table, rows)
            return out if values is None else out * tf.cast(values, out.dtype)[..., None]
        indices = tf.broadcast_to(tf.constant(positions, tf.int32)[None], tf.shape(rows))
    offsets = tf.constant(offsets, tf.int32)
    if indices is None:
        rows = ids + offsets
        values = fields.get("values")
    else:
        indices = tf.cast(indices, tf.int32)
        rows = tf.gather(ids, indices, batch_dims=1) + tf.gather(offsets, indices)
        values = fields.get("values")
        if values is not None:
            values = tf.gather(values, indices, batch_dims=1)
    if not bag_fields and include is None:
        out = tf.gather(table, rows)
        return out if values is None else out * tf.cast(values, out.dtype)[..., None]

    num_fields = ids.shape[-1]
    include = [True] * num_fields if include is None else [bool(v) for v in include]
    shape = tf.shape(rows)  # (B, m)
    positions = tf.broadcast_to(tf.range(shape[1])[None], shape) if indices is None else indices
    bag_of = [-1] * num_fields  # field -> which bag (-1: single-valued, -2: not in this table)
    for j, f in enumerate(bag_fields):
        bag_of[f] = j
    bag_of = [b if inc else -2 for b, inc in zip(bag_of, include)]
    bag = tf.gather(tf.constant(bag_of, tf.int32), positions)  # (B, m)
    slot = tf.reshape(tf.range(shape[0] * shape[1]), shape)  # (row, slot) -> output segment
    # Single-valued fields: one row each, scaled by its value.
    single = tf.equal(bag, -1)
    single_rows = tf.boolean_mask(rows, single)
    single_weights = (tf.boolean_mask(values, single) if values is not None
                      else tf.ones(tf.shape(single_rows), table.dtype))
    single_slots = tf.boolean_mask(slot, single)
    if not any(include[f] for f in bag_fields):
        pooled = tf.math.unsorted_segment_sum(
            tf.gather(table, single_rows) * tf.cast(single_weights, table.dtype)[:, None],
            single_slots, shape[0] * shape[1])
        return tf.reshape(pooled, tf.concat([shape, tf.shape(table)[1:]], 0))
    # Multi-valued fields: the values of the kept (row, field) pairs only.
    pairs = tf.where(bag >= 0)  # (n, 2): [row, slot]
    which = tf.stack([pairs[:, 0], tf.cast(tf.gather_nd(bag, pairs), tf.int64)], axis=1)
    bag_ids = tf.gather_nd(tf.cast(fields["bag_ids"], tf.int32), which)  # (n, L)
    bag_weights = tf.gather_nd(fields["bag_weights"], which)
    present = bag_ids >= 0
    field_offset = tf.gather(offsets, tf.gather_nd(positions, pairs))  # (n,)
    bag_rows = tf.boolean_mask(bag_ids + field_offset[:, None], present)
    bag_slots = tf.boolean_mask(
        tf.broadcast_to(tf.gather_nd(slot, pairs)[:, None], tf.shape(bag_ids)), present)
    all_rows = tf.concat([single_rows, bag_rows], 0)
    weights = tf.concat([tf.cast(single_weights, table.dtype),
                         tf.cast(tf.boolean_mask(bag_weights, present), table.dtype)], 0)
    pooled = tf.math.unsorted_segment_sum(tf.gather(table, all_rows) * weights[:, None],
                                          tf.concat([single_slots, bag_slots], 0),
                                          shape[0] * shape[1])
    return tf.reshape(pooled, tf.concat([shape, tf.shape(table)[1:]], 0))
