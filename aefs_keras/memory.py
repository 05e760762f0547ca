"""The memory plan: embedding tables and their optimizer slots, checked
against the memory available before any table is allocated."""

from __future__ import annotations

import dataclasses
import os

# Optimizer state per embedding value, and transient table-sized buffers.
# Keras' Adam densifies an IndexedSlices gradient: one table-sized
# temporary per step on top of its two slots.
_SLOTS = {"adam": (2.0, 1.0), "lazy_adam": (2.0, 0.0), "rowwise_adagrad": (0.0, 0.0), "sgd": (0.0, 1.0)}
EMBEDDING_OPTIMIZERS = tuple(_SLOTS)
SAFETY = 0.8  # leave room for activations, the input pipeline and the runtime


def available_memory() -> int:
    """Bytes this process can still use: MemAvailable, capped by a cgroup limit."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit.isdigit():
            room = int(limit) - used
            available = room if available is None else min(available, room)
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return available


@dataclasses.dataclass
class MemoryPlan:
    """Bytes of the embedding tables, their optimizer slots and temporaries."""

    tables: list  # (name, rows, width)
    embedding_optimizer: str
    table_bytes: int
    slot_bytes: int
    temporary_bytes: int
    available_bytes: int

    @property
    def init_bytes(self) -> int:
        # A big table starts as a zeros tensor copied into the variable.
        return 4 * max(r * w for _, r, w in self.tables)

    @property
    def total_bytes(self) -> int:
        """Peak: tables and slots, plus the larger of the step's temporaries
        and the zeros tensor a table is created from."""
        return self.table_bytes + self.slot_bytes + max(self.temporary_bytes, self.init_bytes)

    @property
    def fits(self) -> bool:
        return self.total_bytes <= SAFETY * self.available_bytes

    def __str__(self) -> str:
        gib = 1024.0**3
        lines = ["Memory plan (embedding tables, float32):"]
        for name, rows, width in self.tables:
            lines.append(f"  {name:<18} {rows:>14,} rows x {width:<3} = {rows * width * 4 / gib:8.3f} GiB")
        lines += [
            f"  optimizer slots ({self.embedding_optimizer}): {self.slot_bytes / gib:8.3f} GiB",
            f"  per-step temporaries:          {self.temporary_bytes / gib:8.3f} GiB",
            f"  creating the largest table:    {self.init_bytes / gib:8.3f} GiB",
            f"  total {self.total_bytes / gib:.3f} GiB of {self.available_bytes / gib:.3f} GiB available "
            f"(limit {SAFETY:.0%} of it)",
        ]
        return "\n".join(lines)

    def check(self) -> None:
        """Raise MemoryError, before allocation, when the plan does not fit."""
        if not self.fits:
            raise MemoryError(
                f"The embedding tables need {self.total_bytes / 1024**3:.2f} GiB with their "
                f"optimizer state ({self.embedding_optimizer}), more than {SAFETY:.0%} of the "
                f"{self.available_bytes / 1024**3:.2f} GiB available. Use fewer hash buckets, a smaller "
                "d_main, or SparseAdam(embedding_rule='rowwise_adagrad') with "
                "memory_check='rowwise_adagrad'.\n" + str(self)
            )


def memory_plan(schema, d_main: int = 32, d_aux: int = 4, selection: str | None = None,
                uses_linear: bool = False, embedding_optimizer: str = "adam", field_dims=None) -> MemoryPlan:
    """The plan for a model from `build_model` with these arguments
    (`field_dims`: the main tables' per-field widths, 0 for a field not
    read, in place of the schema's).

    Example:

    >>> from aefs_keras import Schema, Categorical
    >>> plan = memory_plan(Schema([Categorical("ad", hash_buckets=1_000_000)]), d_main=16)
    >>> plan.table_bytes  # 10^6 rows x 16 values x 4 bytes
    64000000
    >>> narrow = Schema([Categorical("ad", hash_buckets=1_000_000, embedding_dim=4)])
    >>> memory_plan(narrow, d_main=16).table_bytes  # each field at its own width
    16000000
    """
    from aefs_keras.schema import as_schema

    if embedding_optimizer not in _SLOTS:
        raise ValueError(f"`embedding_optimizer` must be one of {EMBEDDING_OPTIMIZERS}. "
                         f"Received: embedding_optimizer={embedding_optimizer!r}")
    from aefs_keras.layers.field_embedding import width_groups

    schema = as_schema(schema)
    rows = schema.total_size
    tables = [("main_embedding", rows, d_main)]
    field_dims = field_dims if field_dims is not None else schema.field_dims
    if field_dims:  # per-field widths: one main table per width
        dims = [d_main if d is None else d for d in field_dims]
        tables = [("main_embedding" if w == d_main else f"main_embedding_{w}", r, w)
                  for w, _, _, r in width_groups(schema.field_sizes, schema.offsets, dims)]
    if uses_linear:
        tables.append(("linear_embedding", rows, 1))
    if selection == "aefs":
        tables.append(("aux_embedding", rows, d_aux))
    values = sum(r * w for _, r, w in tables)
    slots, temporaries = _SLOTS[embedding_optimizer]
    slot_bytes = int(4 * values * slots)
    if embedding_optimizer == "rowwise_adagrad":
        slot_bytes = 4 * sum(r for _, r, _ in tables)
    return MemoryPlan(tables, embedding_optimizer, 4 * values, slot_bytes,
                      int(4 * max(r * w for _, r, w in tables) * temporaries), available_memory())
