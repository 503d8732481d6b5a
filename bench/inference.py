"""onnxruntime against keras predict and a compiled tf.function call, per family, batch 1 and 64.

For the GRU and transformer families it also times tf2onnx's own export (a Loop for the GRU, a
graph full of run-time shape arithmetic for the transformer) beside the graph this project writes
from the weights (ONNX's fused GRU op; static-shape attention with LayerNormalization ops).

    .venv/bin/python bench/inference.py
"""

import numpy as np
import tensorflow as tf

from thunder_dagster.modeling.architectures import build_language_model, compile_model
from thunder_dagster.modeling.graphs import DIRECT_FAMILIES, _tf2onnx, export_onnx
from thunder_dagster.modeling.verification import mean_milliseconds, session

VOCAB = 65
CONFIGS = {
    "gru": {"hidden_size": 256, "layers": 1},
    "conv": {"hidden_size": 128, "layers": 4},
    "transformer": {"hidden_size": 128, "layers": 4},
}


def main() -> None:
    print(
        f"{'model':24} {'batch':>5} {'ort ms':>8} {'tf.function ms':>15} {'predict ms':>11} "
        f"{'vs tf.function':>15} {'vs predict':>11}"
    )
    for family, shape in CONFIGS.items():
        hp = {
            "family": family,
            "context_length": 64,
            "learning_rate": 1e-3,
            "dropout": 0.0,
            "activation": "gelu",
            **shape,
        }
        model = compile_model(build_language_model(hp, VOCAB), 1e-3)
        compiled = tf.function(lambda x, model=model: model(x, training=False), jit_compile=True)
        exports = {family: session(export_onnx(model, family).SerializeToString())}
        if family in DIRECT_FAMILIES:
            exports[f"{family} (tf2onnx)"] = session(_tf2onnx(model).SerializeToString())
        for batch in (1, 64):
            tokens = np.random.default_rng(0).integers(0, VOCAB, (batch, 64), dtype=np.int32)
            repeats = 200 if batch == 1 else 30
            tf_ms = mean_milliseconds(lambda t=tokens, f=compiled: f(t).numpy(), repeats)
            predict_ms = mean_milliseconds(lambda t=tokens, m=model: m.predict(t, verbose=0), 10)
            for name, onnx_session in exports.items():
                ort_ms = mean_milliseconds(
                    lambda s=onnx_session, t=tokens: s.run(["logits"], {"tokens": t}), repeats
                )
                print(
                    f"{name:24} {batch:>5} {ort_ms:>8.3f} {tf_ms:>15.3f} {predict_ms:>11.2f} "
                    f"{tf_ms / ort_ms:>14.1f}x {predict_ms / ort_ms:>10.1f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
