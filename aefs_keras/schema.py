"""Feature schema: which fields exist and how each raw value becomes an id.

Every field maps to a contiguous block of ids; blocks are laid end to end
(per-field offsets) so that one embedding table can serve all fields.

- `Categorical(name, vocabulary_size=N)`: integer ids in [0, N); any other
  value (negative, >= N) goes to the field's one OOV id N. Size N + 1.
- `Categorical(name, vocabulary=[...])`: strings looked up in the list;
  unseen strings (and "") go to OOV id 0, list entries to 1..N. Size N + 1.
- `Categorical(name, hash_buckets=N)`: strings (or integers, as their
  decimal string) hashed into N buckets. Size N.
- `Numeric(name, boundaries=[...])`: floats bucketised by the sorted
  boundaries into len + 1 buckets; NaN (missing) gets its own id. Size len + 2.
- `MultiCategorical(name, ...)`: a list of values per row (ids as for
  `Categorical`), pooled into one field vector by mean or sum.
- `DenseNumeric(name, normalization=...)`: a value fed as a value: a
  learned vector times the normalised value, another for NaN. Size 2.

`share_embedding_with="other"` puts a categorical field on another's ids
and table block (item_id and a history of item ids).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Categorical:
    """A categorical field. Give exactly one of the three id sources.

    Args:
        name: feature name (the model's input name).
        vocabulary_size: integer ids in [0, vocabulary_size).
        vocabulary: the known string values.
        hash_buckets: number of hash buckets for strings or integers.
        dtype: input dtype for `hash_buckets` fields, "string" or "int64".
        oov_buckets: with `vocabulary`: values not in it are hashed into
            this many ids (default 1: one OOV id). A vocabulary of the most
            frequent values plus hashed buckets for the long tail keeps the
            served lookup table small whatever the field's cardinality.
        share_embedding_with: the name of another categorical field whose
            ids and embedding rows this field uses (one table for both, e.g.
            an item id and a history of item ids). Give no id source of
            its own, or the same one.
        embedding_dim: this field's embedding width (default None: the
            model's `d_main`); see `Schema.field_dims`.
    """

    name: str
    vocabulary_size: int | None = None
    vocabulary: tuple[str, ...] | None = None
    hash_buckets: int | None = None
    dtype: str | None = None
    oov_buckets: int = 1
    share_embedding_with: str | None = None
    embedding_dim: int | None = None

    def __post_init__(self):
        _check_name(self.name)
        _check_embedding_dim(self)
        given = [
            a
            for a in ("vocabulary_size", "vocabulary", "hash_buckets")
            if getattr(self, a) is not None
        ]
        if self.share_embedding_with is not None:
            if not isinstance(self.share_embedding_with, str) or self.share_embedding_with == self.name:
                raise ValueError(f"`share_embedding_with` of field `{self.name}` must name another "
                                 f"field. Received: share_embedding_with={self.share_embedding_with!r}")
            if not given:
                return  # the Schema gives it the other field's ids
        if len(given) != 1:
            raise ValueError(
                f"Categorical field `{self.name}` needs exactly one of "
                "`vocabulary_size`, `vocabulary`, `hash_buckets`. "
                f"Received: {given or 'none'}"
            )
        if self.vocabulary is not None:
            vocab = tuple(str(v) for v in self.vocabulary)
            if len(set(vocab)) != len(vocab):
                raise ValueError(
                    f"`vocabulary` of field `{self.name}` has duplicates."
                )
            if not vocab:
                raise ValueError(
                    f"`vocabulary` of field `{self.name}` is empty."
                )
            object.__setattr__(self, "vocabulary", vocab)
        for arg in ("vocabulary_size", "hash_buckets"):
            value = getattr(self, arg)
            if value is not None and (
                not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(
                    f"`{arg}` of field `{self.name}` must be a positive "
                    f"integer. Received: {arg}={value!r}"
                )
        if isinstance(self.oov_buckets, bool) or not isinstance(self.oov_buckets, (int, np.integer)) \
                or self.oov_buckets < 1:
            raise ValueError(f"`oov_buckets` of field `{self.name}` must be a positive integer. "
                             f"Received: oov_buckets={self.oov_buckets!r}")
        if self.oov_buckets != 1 and self.vocabulary is None:
            raise ValueError(f"`oov_buckets` applies to `vocabulary` fields only; field `{self.name}` "
                             f"received oov_buckets={self.oov_buckets!r}")
        if self.dtype is not None:
            if self.hash_buckets is None:
                raise ValueError(
                    f"`dtype` applies to `hash_buckets` fields only; field "
                    f"`{self.name}` received dtype={self.dtype!r}"
                )
            if self.dtype not in ("string", "int64"):
                raise ValueError(
                    f"`dtype` of field `{self.name}` must be 'string' or "
                    f"'int64'. Received: dtype={self.dtype!r}"
                )

    @property
    def size(self) -> int:
        """Number of ids (embedding rows) this field uses, OOV included."""
        if self.vocabulary_size is not None:
            return int(self.vocabulary_size) + 1
        if self.vocabulary is not None:
            return len(self.vocabulary) + int(self.oov_buckets)
        return int(self.hash_buckets)

    @property
    def input_dtype(self) -> str:
        if self.vocabulary_size is not None:
            return "int64"
        if self.vocabulary is not None:
            return "string"
        return self.dtype or "string"

    def to_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": "categorical", "name": self.name}
        for arg in ("vocabulary_size", "hash_buckets", "dtype"):
            if getattr(self, arg) is not None:
                config[arg] = getattr(self, arg)
        if self.vocabulary is not None:
            config["vocabulary"] = list(self.vocabulary)
        if self.oov_buckets != 1:
            config["oov_buckets"] = int(self.oov_buckets)
        if self.share_embedding_with is not None:
            config["share_embedding_with"] = self.share_embedding_with
        if self.embedding_dim is not None:
            config["embedding_dim"] = self.embedding_dim
        return config

    def same_ids(self, other) -> bool:
        """True when both map values to ids the same way."""
        return all(getattr(self, a) == getattr(other, a)
                   for a in ("vocabulary_size", "vocabulary", "hash_buckets", "oov_buckets"))


COMBINERS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class MultiCategorical(Categorical):
    """A multi-valued categorical field: a list of values per row (tags, a
    history of item ids), pooled into one field vector. DeepCTR calls it
    `VarLenSparseFeat`, FuxiCTR a `sequence` feature.

    Ids come from the same sources as `Categorical`. The model input is a
    (batch, length) tensor padded with "" (strings) or -1 (integers); an
    empty list is allowed and pools to a zero vector. Selection treats the
    field as one field: kept or dropped whole, and when dropped none of
    its ids are looked up.

    Args:
        combiner: "mean" (default) or "sum" of the values' vectors.
        max_length: keep at most the first `max_length` values of a row
            (default None: all).
        separator: how text readers split a cell into values (default "|").
        weight: the name of a companion float feature (batch, length), one
            weight per value: "sum" becomes the weighted sum, "mean" the
            weighted mean. The companion is a model input, not a field.
        (and the arguments of `Categorical`)
    """

    combiner: str = "mean"
    max_length: int | None = None
    separator: str = "|"
    weight: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.combiner not in COMBINERS:
            raise ValueError(f"`combiner` of field `{self.name}` must be one of {COMBINERS}. "
                             f"Received: combiner={self.combiner!r}")
        if self.max_length is not None and (isinstance(self.max_length, bool) or not isinstance(
                self.max_length, (int, np.integer)) or self.max_length < 1):
            raise ValueError(f"`max_length` of field `{self.name}` must be a positive integer or "
                             f"None. Received: max_length={self.max_length!r}")
        if not isinstance(self.separator, str) or len(self.separator) != 1:
            raise ValueError(f"`separator` of field `{self.name}` must be one character. "
                             f"Received: separator={self.separator!r}")
        if self.weight is not None and (not isinstance(self.weight, str) or not self.weight
                                        or self.weight == self.name):
            raise ValueError(f"`weight` of field `{self.name}` must name a companion feature. "
                             f"Received: weight={self.weight!r}")

    def to_config(self) -> dict[str, Any]:
        config = super().to_config()
        config["type"] = "multi_categorical"
        config["combiner"] = self.combiner
        for arg in ("max_length", "weight"):
            if getattr(self, arg) is not None:
                config[arg] = getattr(self, arg)
        if self.separator != "|":
            config["separator"] = self.separator
        return config


NORMALIZATIONS = ("none", "log", "standard")


@dataclasses.dataclass(frozen=True)
class DenseNumeric:
    """A numeric value fed as a value (DeepCTR's `DenseFeat`): its field
    vector is a learned vector times the normalised value (FuxiCTR's
    convention), so every backbone and every selection method treats it
    like any other field. A missing value (NaN) has a learned vector of its
    own.

    Args:
        name: feature name (a float input).
        normalization: "none" (the value as is), "log" (sign(v) *
            log(1 + |v|)) or "standard" ((v - mean) / std).
        mean, std: for "standard" (std > 0).
        embedding_dim: this field's embedding width (default: `d_main`).
    """

    name: str
    normalization: str = "none"
    mean: float = 0.0
    std: float = 1.0
    embedding_dim: int | None = None

    def __post_init__(self):
        _check_name(self.name)
        _check_embedding_dim(self)
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` of field `{self.name}` must be one of "
                             f"{NORMALIZATIONS}. Received: normalization={self.normalization!r}")
        for arg in ("mean", "std"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(value):
                raise ValueError(f"`{arg}` of field `{self.name}` must be a finite number. "
                                 f"Received: {arg}={value!r}")
            object.__setattr__(self, arg, float(value))
        if self.std <= 0:
            raise ValueError(f"`std` of field `{self.name}` must be > 0. Received: std={self.std!r}")

    @property
    def size(self) -> int:
        return 2  # the value's vector and the missing value's

    @property
    def input_dtype(self) -> str:
        return "float32"

    def to_config(self) -> dict[str, Any]:
        config = {"type": "dense_numeric", "name": self.name, "normalization": self.normalization}
        if self.normalization == "standard":
            config.update(mean=self.mean, std=self.std)
        if self.embedding_dim is not None:
            config["embedding_dim"] = self.embedding_dim
        return config


@dataclasses.dataclass(frozen=True)
class Numeric:
    """A numeric field, bucketised into ids.

    Args:
        name: feature name.
        boundaries: strictly increasing bucket boundaries. A value v falls
            in bucket i when boundaries[i-1] <= v < boundaries[i].
        embedding_dim: this field's embedding width (default: `d_main`).
    """

    name: str
    boundaries: tuple[float, ...] = ()
    embedding_dim: int | None = None

    def __post_init__(self):
        _check_name(self.name)
        _check_embedding_dim(self)
        bounds = tuple(float(b) for b in self.boundaries)
        if not bounds:
            raise ValueError(
                f"`boundaries` of field `{self.name}` must not be empty."
            )
        if any(not math.isfinite(b) for b in bounds) or any(
            b >= c for b, c in zip(bounds, bounds[1:])
        ):
            raise ValueError(
                f"`boundaries` of field `{self.name}` must be finite and "
                f"strictly increasing. Received: boundaries={list(bounds)}"
            )
        object.__setattr__(self, "boundaries", bounds)

    @property
    def size(self) -> int:
        return len(self.boundaries) + 2  # buckets + the missing (NaN) id

    @property
    def input_dtype(self) -> str:
        return "float32"

    def to_config(self) -> dict[str, Any]:
        config = {"type": "numeric", "name": self.name, "boundaries": list(self.boundaries)}
        if self.embedding_dim is not None:
            config["embedding_dim"] = self.embedding_dim
        return config


Field = Categorical | MultiCategorical | Numeric | DenseNumeric
FIELD_TYPES = (Categorical, Numeric, DenseNumeric)  # MultiCategorical is a Categorical


def _check_embedding_dim(field):
    d = field.embedding_dim
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1):
        raise ValueError(f"`embedding_dim` of field `{field.name}` must be a positive integer or None. "
                         f"Received: embedding_dim={d!r}")


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"A field `name` must be a non-empty string. Received: {name!r}"
        )


def field_from_config(config: dict[str, Any]) -> Field:
    config = dict(config)
    kind = config.pop("type", None)
    if kind == "categorical":
        return Categorical(**config)
    if kind == "multi_categorical":
        return MultiCategorical(**config)
    if kind == "numeric":
        return Numeric(**config)
    if kind == "dense_numeric":
        return DenseNumeric(**config)
    raise ValueError(
        "Field config `type` must be 'categorical', 'multi_categorical', 'numeric' or "
        "'dense_numeric'. "
        f"Received: type={kind!r}"
    )


class Schema:
    """An ordered set of fields with per-field id offsets.

    Args:
        fields: `Categorical` and `Numeric` fields, in model order.

    Example:

    >>> s = Schema([Categorical("user", vocabulary_size=10),
    ...             Numeric("age", boundaries=[18, 30, 50])])
    >>> s.field_sizes, s.offsets
    ([11, 5], [0, 11])
    """

    def __init__(self, fields: Iterable[Field]):
        fields = tuple(fields)
        if not fields:
            raise ValueError("`fields` must not be empty.")
        for f in fields:
            if not isinstance(f, FIELD_TYPES):
                raise ValueError(
                    "`fields` must hold Categorical, MultiCategorical, Numeric or DenseNumeric "
                    f"fields. Received: {f!r}"
                )
        names = [f.name for f in fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Field names must be unique. Duplicated: {dup}")
        weights = [f.weight for f in fields if isinstance(f, MultiCategorical) and f.weight]
        clash = sorted(set(weights) & set(names)) or sorted({w for w in weights if weights.count(w) > 1})
        if clash:
            raise ValueError(f"A MultiCategorical `weight` names a feature of its own, not a field "
                             f"or another field's weight. Received: {clash}")
        self.fields = tuple(_resolve_sharing(f, fields) for f in fields)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    @property
    def field_sizes(self) -> list[int]:
        return [f.size for f in self.fields]

    @property
    def offsets(self) -> list[int]:
        """First table row of each field. Fields lay their ids end to end;
        a field that shares another's embedding gets that field's offset."""
        own, start = {}, 0
        for f in self.fields:
            if getattr(f, "share_embedding_with", None) is None:
                own[f.name] = start
                start += f.size
        return [own[getattr(f, "share_embedding_with", None) or f.name] for f in self.fields]

    @property
    def total_size(self) -> int:
        """Rows of the one table all fields share (a shared block counts once)."""
        return int(sum(f.size for f in self.fields if getattr(f, "share_embedding_with", None) is None))

    @property
    def bag_fields(self) -> list[int]:
        """Positions of the multi-valued fields."""
        return [i for i, f in enumerate(self.fields) if isinstance(f, MultiCategorical)]

    @property
    def has_values(self) -> bool:
        """True when some field scales its vector by a value (DenseNumeric)."""
        return any(isinstance(f, DenseNumeric) for f in self.fields)

    @property
    def field_dims(self) -> list[int | None] | None:
        """Per-field embedding widths (None entries: the model's d_main), or
        None when no field sets one. The main embedding layers store each
        width's fields in one table and project every field to d_main."""
        dims = [f.embedding_dim for f in self.fields]
        return None if all(d is None for d in dims) else dims

    def table_layout(self) -> dict[str, Any]:
        """The embedding layers' arguments that follow from the schema:
        `field_sizes`, and `offsets` / `bag_fields` where they differ from
        the defaults (ids end to end, no multi-valued fields)."""
        layout: dict[str, Any] = {"field_sizes": self.field_sizes}
        default = [int(o) for o in np.cumsum([0] + self.field_sizes[:-1])]
        if self.offsets != default:
            layout["offsets"] = self.offsets
        if self.bag_fields:
            layout["bag_fields"] = self.bag_fields
        return layout

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"No field named {name!r}; fields are {self.names}")

    def select(self, names: Sequence[str]) -> "Schema":
        """A schema with only the named fields, in the given order (a field
        whose embedding owner is left out gets a table block of its own)."""
        fields = [self.field(n) for n in names]
        return Schema([dataclasses.replace(f, share_embedding_with=None)
                       if getattr(f, "share_embedding_with", None) not in (None, *names) else f
                       for f in fields])

    @property
    def input_names(self) -> list[str]:
        """The model's input features: every field, then the companion
        weights of multi-valued fields."""
        return self.names + [f.weight for f in self.fields if isinstance(f, MultiCategorical) and f.weight]

    def input_specs(self) -> dict[str, tuple[tuple, str]]:
        """name -> (shape without the batch, dtype) of each model input."""
        specs = {}
        for f in self.fields:
            specs[f.name] = ((None,), f.input_dtype) if isinstance(f, MultiCategorical) else ((), f.input_dtype)
            if isinstance(f, MultiCategorical) and f.weight:
                specs[f.weight] = ((None,), "float32")
        return specs

    def keras_inputs(self) -> dict[str, Any]:
        """One `keras.Input` per input feature: a batch of scalars, or of
        padded lists for multi-valued fields and their weights."""
        import keras

        return {name: keras.Input(shape=shape, dtype=dtype, name=name)
                for name, (shape, dtype) in self.input_specs().items()}

    def check_feature_dtypes(self, dtypes: dict[str, Any]) -> None:
        """Raise ValueError for a missing feature or a wrong dtype.

        `dtypes` maps feature names to numpy or TensorFlow dtypes. Keras
        would otherwise cast silently (a float 1.7 fed as an id becomes 1).
        """
        import tensorflow as tf

        missing = [n for n in self.input_names if n not in dtypes]
        if missing:
            raise ValueError(
                f"Missing feature(s) {missing} required by the schema. "
                f"Received features: {sorted(dtypes)}"
            )
        weights = [f.weight for f in self.fields if isinstance(f, MultiCategorical) and f.weight]
        for f in [*self.fields, *(DenseNumeric(w) for w in weights)]:
            dt = tf.as_dtype(dtypes[f.name])
            want = f.input_dtype
            if want == "string":
                ok = dt == tf.string
            elif want == "int64":
                ok = dt.is_integer
            else:
                ok = dt.is_floating or dt.is_integer
            if not ok:
                raise ValueError(
                    f"Feature `{f.name}` must have dtype {want}"
                    f"{' (integer ids)' if want == 'int64' else ''}. "
                    f"Received: dtype={dt.name}"
                )

    def get_config(self) -> dict[str, Any]:
        return {"fields": [f.to_config() for f in self.fields]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Schema":
        return cls([field_from_config(c) for c in config["fields"]])

    def to_json(self, path: str | None = None) -> str:
        text = json.dumps(self.get_config(), indent=1)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str) -> "Schema":
        text = text_or_path
        if not text_or_path.lstrip().startswith("{"):
            with open(text_or_path, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_config(json.loads(text))

    def __eq__(self, other):
        return isinstance(other, Schema) and self.fields == other.fields

    def __repr__(self):
        return f"Schema({len(self.fields)} fields: {self.names})"


def as_schema(schema) -> Schema:
    """Accept a Schema, its config dict or its JSON."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, dict):
        return Schema.from_config(schema)
    if isinstance(schema, str):
        return Schema.from_json(schema)
    raise ValueError(
        "`schema` must be a Schema, a schema config dict or JSON. "
        f"Received: {type(schema).__name__}"
    )


def example_feature_spec(schema) -> dict:
    """`tf.io.parse_example` spec for the schema's raw features.

    A feature left out of a `tf.Example` is a missing value, as tf.Example
    is a sparse format: NaN for numeric fields (their missing bucket), ""
    or -1 for categorical ones (their OOV id).

    Example:

    >>> spec = example_feature_spec(Schema([Categorical("c", vocabulary_size=3)]))
    >>> spec["c"].default_value
    -1
    """
    import tensorflow as tf

    defaults = {"string": "", "int64": -1, "float32": float("nan")}
    spec = {}
    for name, (shape, dtype) in as_schema(schema).input_specs().items():
        if shape:  # a list (or its weights): any length, padded by `dense_features`
            spec[name] = tf.io.RaggedFeature(tf.as_dtype(dtype), row_splits_dtype=tf.int64)
        else:
            spec[name] = tf.io.FixedLenFeature([], tf.as_dtype(dtype), default_value=defaults[dtype])
    return spec


def list_padding(dtype) -> Any:
    """What pads a multi-valued field's rows: "" (strings) or -1 (integer
    ids); its weights pad with 0."""
    return {"string": "", "int64": -1, "float32": 0.0}[str(dtype)]


def split_list_cells(cells, separator):
    """Text cells "a|b|c" -> ragged lists of their values: stripped, empty
    values dropped, so "" is an empty list. The one rule for text lists
    (the CSV reader and `dense_features` both use it)."""
    import tensorflow as tf

    values = tf.strings.split(cells, separator)
    values = tf.ragged.map_flat_values(tf.strings.strip, values)
    return tf.ragged.boolean_mask(values, tf.strings.length(values) > 0)


def dense_features(features: dict, schema) -> dict:
    """List features in the form the model takes: padded (batch, length)
    tensors. Accepts ragged or sparse lists (`tf.io.parse_example` with
    `example_feature_spec`, Parquet list columns) and, for a multi-valued
    field, a delimited text cell per row (a CSV column read as a string:
    "a|b|c", split at the field's `separator`; "" is an empty list).

    Example:

    >>> import tensorflow as tf
    >>> s = Schema([MultiCategorical("tags", vocabulary_size=9)])
    >>> dense_features({"tags": tf.constant(["1|2", "", "7"])}, s)["tags"].numpy().tolist()
    [[1, 2], [-1, -1], [7, -1]]
    """
    import tensorflow as tf

    schema = as_schema(schema)
    out = dict(features)
    multi = {f.name: f for f in schema.fields if isinstance(f, MultiCategorical)}
    for name, (shape, dtype) in schema.input_specs().items():
        value = out.get(name)
        if not shape or value is None:
            continue
        if isinstance(value, tf.SparseTensor):
            value = tf.RaggedTensor.from_sparse(value)
        if not isinstance(value, tf.RaggedTensor):
            value = tf.convert_to_tensor(value)
            if value.shape.rank != 1 or value.dtype != tf.string:
                continue  # already padded lists
            field = multi.get(name) or next(f for f in multi.values() if f.weight == name)
            value = split_list_cells(value, field.separator)
            if dtype != "string":
                value = tf.strings.to_number(value, tf.as_dtype(dtype))
        out[name] = value.to_tensor(default_value=list_padding(dtype))
    return out


def _resolve_sharing(field, fields):
    """A field that shares another's embedding takes that field's ids."""
    target_name = getattr(field, "share_embedding_with", None)
    if target_name is None:
        return field
    target = next((f for f in fields if f.name == target_name), None)
    if target is None or not isinstance(target, Categorical):
        raise ValueError(f"`share_embedding_with` of field `{field.name}` must name a categorical "
                         f"field of the schema. Received: share_embedding_with={target_name!r}")
    if target.share_embedding_with is not None:
        raise ValueError(f"Field `{field.name}` shares the embedding of `{target_name}`, which shares "
                         f"another's: name the owner `{target.share_embedding_with}` instead.")
    if field.embedding_dim != target.embedding_dim and field.embedding_dim is not None:
        raise ValueError(f"Field `{field.name}` shares the embedding of `{target_name}`, so it has its "
                         f"width: embedding_dim={target.embedding_dim!r}. Received: "
                         f"embedding_dim={field.embedding_dim!r}")
    field = dataclasses.replace(field, embedding_dim=target.embedding_dim)
    own = [a for a in ("vocabulary_size", "vocabulary", "hash_buckets") if getattr(field, a) is not None]
    if not own:
        return dataclasses.replace(field, vocabulary_size=target.vocabulary_size,
                                   vocabulary=target.vocabulary, hash_buckets=target.hash_buckets,
                                   dtype=target.dtype, oov_buckets=target.oov_buckets)
    if not field.same_ids(target):
        raise ValueError(f"Field `{field.name}` shares the embedding of `{target_name}` but maps "
                         "values to ids differently; give it no id source (it takes the other "
                         "field's) or the same one.")
    return field
