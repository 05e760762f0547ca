"""FieldEmbedding: every field's id looked up in one shared table."""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from aefs_keras.ops import lookup_fields


def check_field_sizes(field_sizes) -> list[int]:
    sizes = [int(s) for s in field_sizes]
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(
            "`field_sizes` must be a non-empty list of positive integers. "
            f"Received: field_sizes={list(field_sizes)!r}"
        )
    return sizes


def ids_shape_of(ids_shape):
    """The (B, F) ids' shape, from ids or from `FieldIds`' dict."""
    return ids_shape["ids"] if isinstance(ids_shape, dict) else ids_shape


def check_layout(field_sizes, offsets, bag_fields):
    """Validated per-field offsets (default: ids end to end), the table's
    row count, and the multi-valued field positions."""
    default = np.cumsum([0] + list(field_sizes[:-1])).astype("int32")
    if offsets is None:
        offsets = default
    else:
        offsets = np.asarray(offsets, "int64")
        if offsets.shape != (len(field_sizes),) or (offsets < 0).any():
            raise ValueError(f"`offsets` must be {len(field_sizes)} non-negative integers, one per "
                             f"field. Received: offsets={list(offsets)!r}")
        offsets = offsets.astype("int32")
    bag_fields = [int(b) for b in bag_fields]
    if any(not 0 <= b < len(field_sizes) for b in bag_fields) or len(set(bag_fields)) != len(bag_fields):
        raise ValueError(f"`bag_fields` must be distinct field positions in [0, {len(field_sizes)}). "
                         f"Received: bag_fields={bag_fields!r}")
    rows = int(max(o + s for o, s in zip(offsets, field_sizes)))
    return offsets, rows, sorted(bag_fields)


def layout_config(layer) -> dict:
    """`offsets` / `bag_fields` for get_config, where not the defaults."""
    config = {}
    default = np.cumsum([0] + list(layer.field_sizes[:-1]))
    if list(layer.offsets) != list(default):
        config["offsets"] = [int(o) for o in layer.offsets]
    if layer.bag_fields:
        config["bag_fields"] = list(layer.bag_fields)
    return config


def check_field_dims(field_dims, num_fields: int, output_dim: int, allow_zero: bool = False):
    """Per-field storage widths (None: all `output_dim`). With `allow_zero`,
    a width of 0 means the field is not read at all (a static selection)."""
    if field_dims is None:
        return None
    dims = list(field_dims)
    low = 0 if allow_zero else 1
    if len(dims) != num_fields or any(d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer))
                                                         or d < low) for d in dims):
        raise ValueError(f"`field_dims` must be {num_fields} integers >= {low} (or None), one per "
                         f"field. Received: field_dims={field_dims!r}")
    dims = [output_dim if d is None else int(d) for d in dims]
    return None if all(d == output_dim for d in dims) else dims


def width_groups(field_sizes, offsets, field_dims):
    """Fields grouped by storage width, each group one table: (width, the
    fields it holds (F booleans), their offsets in it, its rows). A shared
    block (equal offsets) stays one block."""
    groups = []
    for width in sorted(set(field_dims) - {0}):  # width 0: not read
        include = [d == width for d in field_dims]
        local, block_start, rows = [], {}, 0
        for f, (size, off) in enumerate(zip(field_sizes, offsets)):
            if include[f] and int(off) not in block_start:
                block_start[int(off)] = rows
                rows += size
            local.append(block_start.get(int(off), 0))
        groups.append((width, include, np.asarray(local, "int32"), rows))
    return groups


class _WidthTable(keras.layers.Layer):
    """One table of a per-field-width embedding layer (not used alone)."""

    def __init__(self, rows, width, initializer, regularizer, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.width = rows, width
        self.initializer, self.regularizer = initializer, regularizer

    def build(self, input_shape=None):
        self.embeddings = add_table(self, self.rows, self.width, self.initializer, self.regularizer)


class FieldTables:
    """Shared by the embedding layers: the table(s) and the lookup. With
    per-field widths (`field_dims`), fields of each width share a table.
    For one width out ("fields"), a field narrower or wider than
    `output_dim` is mapped to it by a learned (d_f, output_dim) projection;
    `FieldEmbedding(output_mode="groups")` instead returns each width's
    fields at their own width, for a backbone that takes mixed widths (a
    narrow field's projection would only fold into the next linear step)."""

    def _init_tables(self, field_dims, allow_zero=False, project=True):
        self.field_dims = check_field_dims(field_dims, len(self.field_sizes), self.output_dim, allow_zero)
        self._groups = (None if self.field_dims is None
                        else width_groups(self.field_sizes, self.offsets, self.field_dims))
        self._project = project
        self._width_tables = {}
        if self._groups:
            for width, _, _, rows in self._groups:
                if width != self.output_dim:
                    self._width_tables[str(width)] = _WidthTable(rows, width, self.embeddings_initializer,
                                                            self.embeddings_regularizer, name=f"width_{width}")

    @property
    def read_fields(self) -> list[int]:
        """The fields this layer reads (width > 0), in schema order."""
        if self.field_dims is None:
            return list(range(len(self.field_sizes)))
        return [f for f, d in enumerate(self.field_dims) if d > 0]

    @property
    def group_fields(self) -> list[list[int]]:
        """The fields of each width group, in the order of the groups
        (ascending width) and schema order within a group."""
        if self._groups is None:
            return [list(range(len(self.field_sizes)))]
        return [[int(f) for f in np.flatnonzero(include)] for _, include, _, _ in self._groups]

    def _build_tables(self):
        if self._groups is None:
            self.embeddings = add_table(self, self.table_rows, self.output_dim,
                                        self.embeddings_initializer, self.embeddings_regularizer)
            return
        self.embeddings = None
        self._projections = {}
        for width, include, _, rows in self._groups:
            if width == self.output_dim:
                self.embeddings = add_table(self, rows, width, self.embeddings_initializer,
                                            self.embeddings_regularizer)
                continue
            self._width_tables[str(width)].build()
            if not self._project:
                continue
            for f in np.flatnonzero(include):  # (string keys: TF's tracking needs them)
                self._projections[str(f)] = self.add_weight(
                    shape=(width, self.output_dim), initializer="glorot_uniform", name=f"projection_{f}")

    def _table_of(self, width):
        return self.embeddings if width == self.output_dim else self._width_tables[str(width)].embeddings

    def _groups_lookup(self, ids):
        """Each width group's fields at its own width: [(B, F_g, w_g)],
        reading only the group's fields (`group_fields` says which)."""
        return [lookup_fields(self._table_of(width).value, offsets, ids, fields, self.bag_fields)
                for (width, _, offsets, _), fields in zip(self._groups, self.group_fields)]

    def _lookup(self, ids, indices=None):
        if self._groups is None:
            return lookup_fields(self.embeddings.value, self.offsets, ids, indices, self.bag_fields)
        if indices is None:
            return self._projected(ids)
        out = None
        for width, include, offsets, _ in self._groups:
            part = lookup_fields(self._table_of(width).value, offsets, ids, indices, self.bag_fields,
                                 include=include)
            if width != self.output_dim:
                fields = tf.cast(indices, tf.int32)
                projected = 0.0
                for f, kernel in self._projections.items():
                    if include[int(f)]:
                        projected += tf.where(tf.equal(fields, int(f))[..., None],
                                              tf.matmul(part, kernel), tf.zeros((), part.dtype))
                part = projected
            out = part if out is None else out + part
        return out

    def _projected(self, ids):
        """Every read field at `output_dim`, in schema order: each group
        looked up at its width, projected field by field in one product."""
        parts, order = [], []
        for (width, *_), fields, part in zip(self._groups, self.group_fields, self._groups_lookup(ids)):
            if width != self.output_dim:
                kernel = tf.stack([tf.convert_to_tensor(self._projections[str(f)]) for f in fields])  # (F_g, w, output_dim)
                part = tf.einsum("bfw,fwd->bfd", part, tf.cast(kernel, part.dtype))
            parts.append(part)
            order.extend(fields)
        out = parts[0] if len(parts) == 1 else tf.concat(parts, 1)
        if order != sorted(order):
            out = tf.gather(out, np.argsort(order).astype("int32"), axis=1)
        return out

    def _tables_config(self):
        return {"field_dims": list(self.field_dims)} if self.field_dims is not None else {}


def check_ids_shape(layer_name: str, ids_shape, num_fields: int) -> None:
    ids_shape = ids_shape_of(ids_shape)
    if len(ids_shape) != 2 or ids_shape[-1] != num_fields:
        raise ValueError(
            f"{layer_name} expects ids of shape (batch, {num_fields}), one "
            f"column per field. Received: shape={tuple(ids_shape)}"
        )


_BIG_TABLE = 1 << 24  # values; above this a table is initialised in slices
_SLICE_ROWS = 1 << 18


def add_table(layer, rows: int, width: int, initializer, regularizer):
    """An embedding table of `layer`. A big one starts as zeros and is filled
    slice by slice: a Keras initializer would build two or three
    table-sized temporaries at once (random values, scaled, shifted), which
    is what runs a 10^7-row table out of memory."""
    if rows * width <= _BIG_TABLE:
        return layer.add_weight(shape=(rows, width), initializer=initializer, regularizer=regularizer,
                                name="embeddings")
    table = layer.add_weight(shape=(rows, width), initializer="zeros", regularizer=regularizer,
                             name="embeddings")
    # The backend variable itself: under a tf.distribute strategy `table.value`
    # is a read-only tensor, while the (mirrored) variable takes row updates.
    variable = table._value
    for start in range(0, rows, _SLICE_ROWS):
        n = min(_SLICE_ROWS, rows - start)
        variable.scatter_update(tf.IndexedSlices(initializer((n, width), dtype=table.dtype),
                                                 tf.range(start, start + n)))
    return table


@keras.saving.register_keras_serializable(package="aefs_keras")
class FieldEmbedding(FieldTables, keras.layers.Layer):
    """Looks up all F fields of each row in one table with per-field offsets.

    This is the no-selection and late-selection path: F * `output_dim`
    embedding values are read per example.

    Args:
        field_sizes: number of ids of each field (`Schema.field_sizes`).
        output_dim: embedding width.
        embeddings_initializer: initializer of the table.
        embeddings_regularizer: optional regularizer of the table.
        offsets: first table row of each field (default: ids end to end;
            `Schema.offsets` where fields share a block).
        bag_fields: positions of multi-valued fields (`Schema.bag_fields`).
        field_dims: per-field storage widths (`Schema.field_dims`; None or
            a None entry: `output_dim`; 0: the field is not read, as in a
            static selection); see `FieldTables`.
        output_mode: "fields" (default): (B, F_read, output_dim), every
            read field at `output_dim` (projected where its width differs);
            "groups": a list with one (B, F_g, w_g) tensor per width
            (ascending; `group_fields` names their fields), no projection:
            what a backbone with `supports_mixed_widths` takes.

    Call with ids (B, F), or `FieldIds`' dict for schemas with
    multi-valued or dense numeric fields (see `aefs_keras.ops.lookup_fields`).

    Example:

    >>> import numpy as np
    >>> emb = FieldEmbedding([3, 5], output_dim=4)
    >>> emb(np.array([[0, 4], [2, 1]])).shape
    TensorShape([2, 2, 4])

    Ids are per field, in [0, field size); row `offsets[f] + id` is read.
    """

    def __init__(
        self,
        field_sizes: Sequence[int],
        output_dim: int,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        offsets=None,
        bag_fields=(),
        field_dims=None,
        output_mode="fields",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output_mode not in ("fields", "groups"):
            raise ValueError(f"`output_mode` must be 'fields' or 'groups'. Received: output_mode={output_mode!r}")
        self.output_mode = output_mode
        self.field_sizes = check_field_sizes(field_sizes)
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ValueError(
                f"`output_dim` must be a positive integer. Received: "
                f"output_dim={output_dim!r}"
            )
        self.output_dim = output_dim
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
        self.offsets, self.table_rows, self.bag_fields = check_layout(self.field_sizes, offsets, bag_fields)
        self._init_tables(field_dims, allow_zero=True, project=output_mode == "fields")
        if not self.read_fields:
            raise ValueError(f"`field_dims` must leave at least one field with a width > 0. "
                             f"Received: field_dims={field_dims!r}")

    @property
    def num_fields(self) -> int:
        return len(self.field_sizes)

    def build(self, ids_shape):
        check_ids_shape(type(self).__name__, ids_shape, self.num_fields)
        self._build_tables()

    def call(self, ids):
        # Gathering from the variable's value keeps the gradient sparse
        # (IndexedSlices over the rows read).
        if self.output_mode == "groups":
            if self._groups is None:
                return [self._lookup(ids)]
            return self._groups_lookup(ids)
        return self._lookup(ids)

    def compute_output_shape(self, ids_shape):
        batch = ids_shape_of(ids_shape)[0]
        if self.output_mode == "groups":
            widths = [self.output_dim] if self._groups is None else [g[0] for g in self._groups]
            return [(batch, len(fields), w) for w, fields in zip(widths, self.group_fields)]
        return (batch, len(self.read_fields), self.output_dim)

    def activated_parameters(self) -> int:
        """Embedding values read per example."""
        return int(sum(self.field_dims)) if self.field_dims else self.num_fields * self.output_dim

    def get_config(self):
        config = super().get_config()
        config.update(
            field_sizes=list(self.field_sizes),
            output_dim=self.output_dim,
            embeddings_initializer=keras.initializers.serialize(
                self.embeddings_initializer
            ),
            embeddings_regularizer=keras.regularizers.serialize(
                self.embeddings_regularizer
            ),
            **layout_config(self),
            **self._tables_config(),
        )
        if self.output_mode != "fields":
            config["output_mode"] = self.output_mode
        return config
