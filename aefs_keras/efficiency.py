"""What a model reads and computes per example."""

from __future__ import annotations

import keras

from aefs_keras.layers.auxiliary_selector import AuxiliarySelector
from aefs_keras.layers.conditional_embedding import ConditionalEmbedding
from aefs_keras.layers.field_embedding import FieldEmbedding

_EMBEDDING_LAYERS = (FieldEmbedding, AuxiliarySelector, ConditionalEmbedding)


def _graph_layers(model):
    # Top-level layers only: a selector's own FieldEmbedding is counted by
    # the selector, not twice. Nested models are walked.
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _graph_layers(layer)
        else:
            yield layer


def activated_embedding_parameters(model: keras.Model) -> int:
    """Embedding values looked up per example, all tables counted.

    No selection and late selection read F * d per table; AEFS reads
    F * d_aux (auxiliary) + k * d per main table. This is the paper's
    "activated embedding parameters", with first-order (width-1) tables
    included.
    """
    total = 0
    for layer in _graph_layers(model):
        if isinstance(layer, _EMBEDDING_LAYERS):
            total += layer.activated_parameters()
    return total


def _embedding_tables(model):
    tables = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (FieldEmbedding, ConditionalEmbedding)):
            for table in [layer.embeddings, *(t.embeddings for t in layer._width_tables.values())]:
                if table is not None:
                    tables[id(table)] = table
    return list(tables.values())


def _einsum_macs(equation, shapes):
    # Every index of the equation is looped over once: product of their sizes.
    lhs = equation.replace(" ", "").split("->")[0]
    sizes = {}
    for term, shape in zip(lhs.split(","), shapes):
        if "." in term or len(term) != len(shape):
            return None
        for c, n in zip(term, shape):
            sizes[c] = n
    total = 1
    for n in sizes.values():
        total *= n
    return total


def _graph_macs(graph):
    """Multiply-adds of the matrix products in a traced graph (batch 1)."""
    total = 0
    for op in graph.get_operations():
        shapes = [t.shape.as_list() for t in op.inputs]
        if op.type == "MatMul":
            a, b = shapes
            m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
            n = b[0] if op.get_attr("transpose_b") else b[1]
            total += m * k * n
        elif op.type in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a, b = shapes
            batch = 1
            for n in a[:-2]:
                batch *= n
            m, k = (a[-1], a[-2]) if op.get_attr("adj_x") else (a[-2], a[-1])
            n = b[-2] if op.get_attr("adj_y") else b[-1]
            total += batch * m * k * n
        elif op.type == "Einsum":
            macs = _einsum_macs(op.get_attr("equation").decode(), shapes)
            if macs is None:
                raise ValueError(f"Cannot count multiply-adds of einsum {op.get_attr('equation')!r}")
            total += macs
        elif op.type in ("Conv2D", "Conv1D", "DepthwiseConv2dNative"):
            raise ValueError(f"Multiply-add counting does not cover {op.type} yet.")
    return total


def model_costs(model: keras.Model) -> dict[str, int]:
    """Parameters and per-example compute of a built model.

    Returns a dict with:
      - `dense_parameters`: every weight that is not an embedding table
        (backbone, heads, selector controller, alignment projection);
      - `embedding_parameters`: rows x width of every embedding table;
      - `activated_embedding_parameters`: embedding values read per example;
      - `multiply_adds`: multiply-adds per example of the matrix products
        (MatMul, BatchMatMul, Einsum) in the serving graph, which runs the
        selector and the main model only. Element-wise work (activations,
        normalisation, the FM's sums) is not counted; it is small next to
        the matrix products in every backbone here.

    Example:

    >>> from aefs_keras import Schema, Categorical, build_model
    >>> schema = Schema([Categorical(f"c{i}", vocabulary_size=10) for i in range(4)])
    >>> costs = model_costs(build_model(schema, "dnn", hidden_units=[8]))
    >>> costs["multiply_adds"]  # (4*32)*8 + 8*1
    1032
    """
    import tensorflow as tf

    from aefs_keras.serving import _input_signature, inference_model

    tables = _embedding_tables(model)
    embedding = sum(int(v.numpy().size) for v in tables)
    total = sum(int(v.numpy().size) for v in model.weights)
    serving = inference_model(model)
    spec = {name: tf.TensorSpec([1], s.dtype) for name, s in _input_signature(serving).items()}
    graph = tf.function(lambda x: serving(x, training=False)).get_concrete_function(spec).graph
    return {
        "dense_parameters": total - embedding,
        "embedding_parameters": embedding,
        "activated_embedding_parameters": activated_embedding_parameters(model),
        "multiply_adds": _graph_macs(graph),
    }
