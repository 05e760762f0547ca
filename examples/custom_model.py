"""Compose AEFS's three public layers with your own backbone, in a functional model.

    python examples/custom_model.py

The backbone here is a user's own: a bilinear pooling of the kept fields
and a small MLP. AuxiliarySelector picks k fields per example,
ConditionalEmbedding looks up only those, AlignmentLoss pulls the small
model towards the big one, and CTRModel adds the auxiliary BCE.
"""

import keras

import aefs_keras as ak
from aefs_keras.layers import AlignmentLoss, AuxiliarySelector, ConditionalEmbedding, FieldIds


def build(schema, k=4, d_main=16, d_aux=4):
    inputs = schema.keras_inputs()
    ids = FieldIds(schema)(inputs)
    sel = AuxiliarySelector(schema.field_sizes, k=k, d_aux=d_aux)(ids)
    # compact: (B, k, d_main), only the kept fields, in the order of sel["indices"]
    emb = ConditionalEmbedding(schema.field_sizes, d_main, output_mode="compact")(
        ids, sel["indices"], sel["weights"])

    # --- the user's own backbone ---
    pooled = keras.ops.sum(emb, axis=1)
    pairs = 0.5 * (keras.ops.square(pooled) - keras.ops.sum(keras.ops.square(emb), axis=1))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(emb))
    logit = keras.layers.Dense(1)(keras.ops.concatenate([pairs, hidden], axis=-1))
    p_main = keras.layers.Activation("sigmoid")(logit)

    # --- a small auxiliary head on the masked small embeddings ---
    aux = sel["embeddings"] * keras.ops.expand_dims(sel["mask"], -1)
    aux_hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(aux))
    p_aux = keras.layers.Dense(1, activation="sigmoid")(aux_hidden)

    # Compact main embeddings: give AlignmentLoss the indices of the kept fields.
    p_out = AlignmentLoss()({"aux_embeddings": sel["embeddings"], "main_embeddings": emb,
                             "indices": sel["indices"], "mask": sel["mask"],
                             "aux_probability": p_aux, "main_probability": p_main})
    return ak.CTRModel(inputs, {"probability": p_out, "aux_probability": p_aux}, schema=schema)


def main(rows=30_000, epochs=2):
    data = ak.datasets.synthetic(num_rows=rows, num_numeric=4, num_categorical=8,
                                 vocabulary_size=200, num_informative=4, num_interactions=2,
                                 batch_size=256)
    model = ak.default_compile(build(data.schema))
    model.fit(data.train, validation_data=data.valid, epochs=epochs, verbose=2)
    result = model.evaluate(data.test, return_dict=True, verbose=0)
    print(f"test AUC {result['auc']:.4f} (oracle {data.oracle_auc:.4f}); "
          f"embedding values read per example: {model.activated_embedding_parameters()}")
    return model, data, result


if __name__ == "__main__":
    main()
