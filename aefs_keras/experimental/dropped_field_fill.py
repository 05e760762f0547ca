"""DroppedFieldFill moved to the core (`aefs_keras.layers.DroppedFieldFill`):
AEFS's mixed resolution fills the dropped fields with it."""

from aefs_keras.layers.dropped_field_fill import DroppedFieldFill

__all__ = ["DroppedFieldFill"]
