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
    """

    name: str
    vocabulary_size: int | None = None
    vocabulary: tuple[str, ...] | None = None
    hash_buckets: int | None = None
    dtype: str | None = None
    oov_buckets: int = 1

    def __post_init__(self):
        _check_name(self.name)
        given = [
            a
            for a in ("vocabulary_size", "vocabulary", "hash_buckets")
            if getattr(self, a) is not None
        ]
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
        return config


@dataclasses.dataclass(frozen=True)
class Numeric:
    """A numeric field, bucketised into ids.

    Args:
        name: feature name.
        boundaries: strictly increasing bucket boundaries. A value v falls
            in bucket i when boundaries[i-1] <= v < boundaries[i].
    """

    name: str
    boundaries: tuple[float, ...] = ()

    def __post_init__(self):
        _check_name(self.name)
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
        return {
            "type": "numeric",
            "name": self.name,
            "boundaries": list(self.boundaries),
        }


Field = Categorical | Numeric


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
    if kind == "numeric":
        return Numeric(**config)
    raise ValueError(
        f"Field config `type` must be 'categorical' or 'numeric'. "
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
            if not isinstance(f, (Categorical, Numeric)):
                raise ValueError(
                    "`fields` must hold Categorical or Numeric fields. "
                    f"Received: {f!r}"
                )
        names = [f.name for f in fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Field names must be unique. Duplicated: {dup}")
        self.fields = fields

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
        return [int(o) for o in np.cumsum([0] + self.field_sizes[:-1])]

    @property
    def total_size(self) -> int:
        return int(sum(self.field_sizes))

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"No field named {name!r}; fields are {self.names}")

    def select(self, names: Sequence[str]) -> "Schema":
        """A schema with only the named fields, in the given order."""
        return Schema([self.field(n) for n in names])

    def keras_inputs(self) -> dict[str, Any]:
        """One `keras.Input` per field: a batch of scalars, dtype per field."""
        import keras

        return {
            f.name: keras.Input(shape=(), dtype=f.input_dtype, name=f.name)
            for f in self.fields
        }

    def check_feature_dtypes(self, dtypes: dict[str, Any]) -> None:
        """Raise ValueError for a missing feature or a wrong dtype.

        `dtypes` maps feature names to numpy or TensorFlow dtypes. Keras
        would otherwise cast silently (a float 1.7 fed as an id becomes 1).
        """
        import tensorflow as tf

        missing = [n for n in self.names if n not in dtypes]
        if missing:
            raise ValueError(
                f"Missing feature(s) {missing} required by the schema. "
                f"Received features: {sorted(dtypes)}"
            )
        for f in self.fields:
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
    return {
        f.name: tf.io.FixedLenFeature([], tf.as_dtype(f.input_dtype), default_value=defaults[f.input_dtype])
        for f in as_schema(schema).fields
    }
