"""Public Keras layers of aefs-keras, in data-flow order.

raw features -> FieldIds -> AuxiliarySelector -> ConditionalEmbedding
(or FieldEmbedding [+ AdaptiveFieldGate]) -> backbone -> AlignmentLoss.
"""

from aefs_keras.layers.field_ids import FieldIds
from aefs_keras.layers.field_embedding import FieldEmbedding
from aefs_keras.layers.selection_controller import SelectionController
from aefs_keras.layers.auxiliary_selector import AuxiliarySelector
from aefs_keras.layers.conditional_embedding import ConditionalEmbedding
from aefs_keras.layers.warmup_fields import WarmupFields
from aefs_keras.layers.dropped_field_fill import DroppedFieldFill
from aefs_keras.layers.adaptive_field_gate import AdaptiveFieldGate
from aefs_keras.layers.alignment_loss import AlignmentLoss
from aefs_keras.layers.mlp import MLP
from aefs_keras.layers.backbone import Backbone
from aefs_keras.layers.factorization_machine import FactorizationMachine
from aefs_keras.layers.dnn import DNN
from aefs_keras.layers.deepfm import DeepFM
from aefs_keras.layers.dcn import DCN
from aefs_keras.layers.wide_deep import WideDeep
from aefs_keras.layers.mlcc import MLCC
from aefs_keras.layers.mlcc_net import MLCCNet

__all__ = [
    "FieldIds", "FieldEmbedding", "SelectionController", "AuxiliarySelector",
    "ConditionalEmbedding", "AdaptiveFieldGate", "AlignmentLoss", "MLP",
    "FactorizationMachine", "DNN", "DeepFM", "DCN", "WideDeep",
    "MLCC", "MLCCNet", "WarmupFields", "Backbone", "DroppedFieldFill",
]
