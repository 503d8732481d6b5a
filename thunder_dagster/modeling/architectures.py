"""The search space and the model builder: a keras-tuner HyperModel over three model families.

Every family maps `tokens` int32 [batch, context] to `logits` float32 [batch, context, vocab],
the next-character logits at each position, so one ONNX signature serves them all.
Import this module only where TensorFlow is meant to load: it imports keras at the top.
"""

import math

from thunder_dagster.modeling.backend import keras
from thunder_dagster.modeling.space import ACTIVATIONS, CONTEXT_LENGTHS, FAMILIES

# isort: split
# After the backend module, which quiets TensorFlow before keras_tuner loads it.
import keras_tuner

HEAD_WIDTH = 32


@keras.saving.register_keras_serializable(package="thunder")
def gelu(x):
    """Exact GELU through erf: TensorFlow's own gelu uses erfc, which ONNX has no operator for."""
    return 0.5 * x * (1.0 + keras.ops.erf(x / math.sqrt(2.0)))


def activation(name: str):
    return gelu if name == "gelu" else name


@keras.saving.register_keras_serializable(package="thunder")
class PositionEmbedding(keras.layers.Layer):
    """A learned vector per position, added to the token embeddings."""

    def __init__(self, context_length: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.context_length = context_length
        self.width = width
        self.embedding = keras.layers.Embedding(context_length, width)

    def build(self, input_shape):
        self.embedding.build((self.context_length,))
        super().build(input_shape)

    def call(self, inputs):
        positions = keras.ops.arange(self.context_length, dtype="int32")
        return inputs + self.embedding(positions)[None, :, :]

    def get_config(self):
        return {**super().get_config(), "context_length": self.context_length, "width": self.width}


@keras.saving.register_keras_serializable(package="thunder")
class AdjustableDropout(keras.layers.Dropout):
    """Dropout whose rate the training may raise later (training.set_dropout): its random
    state exists from the start, also at rate 0, where Keras' own Dropout makes none and so
    could never be raised once built. Inert at inference, like Dropout: the export is the same."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        # Dropout makes its random state only for a positive rate, in __init__ (it has no
        # build step): start it at one, then set the rate wanted. At rate 0 its seed is fixed,
        # so making the state draws nothing from the global seed and every other layer's
        # initial weights are what they were with Keras' own Dropout.
        if not rate and seed is None:
            seed = 0
        super().__init__(rate or 0.5, seed=seed, **kwargs)
        self.rate = rate


@keras.saving.register_keras_serializable(package="thunder")
class LexicalLogits(keras.layers.Layer):
    """A linear model over a text's TF-IDF features (lexical.bags: their table rows and
    weights): the sum of the weighted rows of a [known features + 1, labels] table. The
    vocabulary (each feature's row and idf) rides along as weights nothing trains, so the saved
    model carries all the export needs."""

    def __init__(
        self,
        labels: int,
        vocab_size: int,
        pair_buckets: int,
        known: int,
        vocabulary=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.labels = labels
        self.vocab_size = vocab_size
        self.pair_buckets = pair_buckets
        self.known = known
        self._vocabulary = vocabulary  # a lexical.LexicalVocabulary, or None when loading

    def build(self, input_shape=None):
        self.table = self.add_weight(
            shape=(self.known + 1, self.labels), initializer="zeros", name="table"
        )
        self.idf = self.add_weight(
            shape=(self.known + 1,), initializer="zeros", trainable=False, name="idf"
        )
        self.rows = self.add_weight(
            shape=(self.vocab_size + self.pair_buckets,),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            name="rows",
        )
        if self._vocabulary is not None:
            self.idf.assign(self._vocabulary.idf)
            self.rows.assign(self._vocabulary.rows)
        super().build(input_shape)

    def call(self, ids, weights):
        rows = keras.ops.take(self.table, ids, axis=0)
        return keras.ops.sum(rows * keras.ops.expand_dims(weights, -1), axis=1)

    def get_config(self):
        # The vocabulary comes back with the weights; the config carries only its shape.
        return {
            **super().get_config(),
            "labels": self.labels,
            "vocab_size": self.vocab_size,
            "pair_buckets": self.pair_buckets,
            "known": self.known,
        }


def _gru(x, hp: dict):
    for _ in range(hp["layers"]):
        # reset_after=True is the cuDNN-compatible form ONNX's GRU op computes with
        # linear_before_reset=1, which lets the export use the fused op.
        x = keras.layers.GRU(hp["hidden_size"], return_sequences=True, reset_after=True)(x)
        x = AdjustableDropout(hp["dropout"])(x)
    return keras.layers.Dense(
        hp["hidden_size"], activation=activation(hp["activation"]), name="head"
    )(x)


def _conv(x, hp: dict):
    for layer in range(hp["layers"]):
        residual = x
        x = keras.layers.Conv1D(
            hp["hidden_size"],
            kernel_size=3,
            dilation_rate=2**layer,
            padding="causal",
            activation=activation(hp["activation"]),
        )(x)
        x = AdjustableDropout(hp["dropout"])(x)
        x = keras.layers.LayerNormalization()(keras.layers.Add()([residual, x]))
    return x


def _transformer(x, hp: dict):
    width = hp["hidden_size"]
    heads = max(1, width // HEAD_WIDTH)
    x = PositionEmbedding(hp["context_length"], width)(x)
    for _ in range(hp["layers"]):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.MultiHeadAttention(
            num_heads=heads, key_dim=width // heads, dropout=hp["dropout"]
        )(h, h, use_causal_mask=True)
        x = keras.layers.Add()([x, h])
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(4 * width, activation=activation(hp["activation"]))(h)
        h = keras.layers.Dense(width)(h)
        h = AdjustableDropout(hp["dropout"])(h)
        x = keras.layers.Add()([x, h])
    return keras.layers.LayerNormalization()(x)


BODIES = {"gru": _gru, "conv": _conv, "transformer": _transformer}


def build_language_model(hp: dict, vocab_size: int) -> keras.Model:
    """A functional model (tf2onnx cannot convert Sequential ones) for one point of the space."""
    tokens = keras.Input((hp["context_length"],), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, hp["hidden_size"], name="embedding")(tokens)
    x = BODIES[hp["family"]](x, hp)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(tokens, logits, name=f"{hp['family']}_language_model")


def load_model(path, compile: bool = True) -> keras.Model:
    """Load a saved model.keras. Its custom objects (`thunder>gelu`, the layers) are registered
    when this module is imported, which a fresh process (a Celery worker taking only the export
    step) would otherwise not have done."""
    return keras.saving.load_model(path, compile=compile)


@keras.saving.register_keras_serializable(package="thunder")
def next_character_loss(targets, logits):
    """Cross-entropy of each next character in nats: log-sum-exp of the logits minus the
    target's logit. Keras' sparse cross-entropy computes the same, but on TensorFlow it adds a
    shape Assert that XLA drops, with a warning on stderr at every compile of every trial."""
    picked = keras.ops.take_along_axis(
        logits, keras.ops.expand_dims(keras.ops.cast(targets, "int32"), -1), axis=-1
    )
    return keras.ops.logsumexp(logits, axis=-1) - keras.ops.squeeze(picked, -1)


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=0.01),
        loss=next_character_loss,
        jit_compile=True,
    )
    return model


class LanguageModelHyperModel(keras_tuner.HyperModel):
    """Seed 002's space (learning rate, hidden size, layers, dropout, activation) plus the
    architecture family and the context length: the architecture search the seeds call NAS."""

    def __init__(
        self,
        vocab_size: int,
        families: tuple[str, ...] = FAMILIES,
        context_lengths: tuple[int, ...] = CONTEXT_LENGTHS,
    ):
        super().__init__(name="language_model")
        self.vocab_size = vocab_size
        self.families = families
        self.context_lengths = context_lengths

    def declare(self, hp: keras_tuner.HyperParameters) -> dict:
        return {
            "family": hp.Choice("family", list(self.families)),
            "context_length": hp.Choice("context_length", list(self.context_lengths)),
            "learning_rate": hp.Float("learning_rate", 1e-5, 1e-2, sampling="log"),
            "hidden_size": hp.Int("hidden_size", 32, 256, step=32),
            "layers": hp.Int("layers", 1, 4),
            "dropout": hp.Float("dropout", 0.0, 0.5),
            "activation": hp.Choice("activation", list(ACTIVATIONS)),
        }

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        values = self.declare(hp)
        return compile_model(build_language_model(values, self.vocab_size), values["learning_rate"])
