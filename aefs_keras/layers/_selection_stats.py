"""Per-field selection counters shared by the selecting layers.

They are non-trainable variables updated on training calls only, so the
`FieldSelectionFrequency` callback reads exact counts over the batches
the model was trained on, at no extra pass over the data.
"""

import tensorflow as tf


def add_selection_stats(layer, num_fields):
    layer.selection_counts = layer.add_weight(
        shape=(num_fields,), initializer="zeros", trainable=False,
        name="selection_counts", aggregation="sum",  # replicas' counts add up
    )
    layer.selection_rows = layer.add_weight(
        shape=(), initializer="zeros", trainable=False, name="selection_rows", aggregation="sum",
    )


def update_selection_stats(layer, indices, num_fields, training):
    if not training:
        return
    # bincount over the B*k kept ids, not a (B, k, F) one-hot; the raw op
    # with a constant size also compiles under XLA (tf.math.bincount derives
    # its size from the data).
    picked = tf.raw_ops.DenseBincount(input=tf.reshape(tf.cast(indices, tf.int32), [-1]), size=num_fields,
                                      weights=tf.zeros([0], tf.float32))
    layer.selection_counts.assign_add(picked)
    layer.selection_rows.assign_add(tf.cast(tf.shape(indices)[0], tf.float32))
