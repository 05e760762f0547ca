"""Research variants of AEFS, off the core path; docs/aefs.md has the
measurements.

Most did not help and are kept so that the benchmark grids that measured
them (benchmarks/configs/selection_signal.yaml and others) still run and
models saved with them still load. One combination did:
`ResearchAEFS.mixed_resolution` (fixed important fields, unscaled, and
dropped fields filled from their auxiliary embeddings), the form that
brings early selection nearest to no selection on the cross backbones.

- `ResearchAEFS`: `AEFS` plus `soft_gradient`, `exploration`,
  `score_decay`, `aux_input="soft"`, `main_weighting="straight_through"`,
  `always_keep` (fields kept on every row), `dropped_fill` and
  `linear_fields="all"` (every field's first-order weight read).
- `ExploringSelector`: `AuxiliarySelector` with the first three and
  `always_keep`.
- `StraightThroughOnes`: ones forward, identity backward (or none).
- `FixedFieldsUnscaled`: weight 1 for the always-kept fields.
- `DroppedFieldFill`: a learned vector per field where a row dropped it
  (`dropped_fill="learned"`), plus a projection of its auxiliary
  embedding (`dropped_fill="aux"`).
"""

from aefs_keras.experimental.dropped_field_fill import DroppedFieldFill
from aefs_keras.experimental.exploring_selector import ExploringSelector
from aefs_keras.experimental.fixed_fields_unscaled import FixedFieldsUnscaled
from aefs_keras.experimental.research_aefs import OPTIONS, ResearchAEFS
from aefs_keras.experimental.straight_through_ones import StraightThroughOnes

__all__ = ["DroppedFieldFill", "ExploringSelector", "FixedFieldsUnscaled", "OPTIONS", "ResearchAEFS", "StraightThroughOnes"]
