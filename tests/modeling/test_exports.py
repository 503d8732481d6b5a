import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from thunder_dagster.modeling.architectures import build_language_model, compile_model
from thunder_dagster.modeling.decoding import StepDecoder, WindowDecoder, sample
from thunder_dagster.modeling.graphs import export_onnx, export_step_onnx
from thunder_dagster.modeling.space import FAMILIES
from thunder_dagster.modeling.text import unigram_loss
from thunder_dagster.modeling.verification import check_step_graph, session, verify

VOCAB = 30
CONTEXT = 16


def tiny(family, activation="gelu", layers=2):
    hp = {
        "family": family,
        "context_length": CONTEXT,
        "learning_rate": 1e-3,
        "hidden_size": 32,
        "layers": layers,
        "dropout": 0.2,
        "activation": activation,
    }
    return compile_model(build_language_model(hp, VOCAB), 1e-3)


def probe():
    rng = np.random.default_rng(7)
    x = rng.integers(0, VOCAB, (8, CONTEXT), dtype=np.int32)
    return x, rng.integers(0, VOCAB, (8, CONTEXT), dtype=np.int32)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("activation", ["relu", "gelu", "swish"])
def test_every_family_exports_to_one_signature_matching_keras(family, activation):
    model = tiny(family, activation)
    proto = export_onnx(model, family)
    assert [i.name for i in proto.graph.input] == ["tokens"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    x, y = probe()
    parity, _, checks = verify(model, session(proto.SerializeToString()), x, (x, y), 100.0)
    assert parity.max_abs_difference <= 1e-4 and parity.argmax_agreement == 1.0
    assert all(check.passed for check in checks), checks
    logits = session(proto.SerializeToString()).run(["logits"], {"tokens": x[:1]})[0]
    assert logits.shape == (1, CONTEXT, VOCAB) and logits.dtype == np.float32


def test_a_gru_exports_as_the_fused_gru_op_not_a_loop():
    operators = {node.op_type for node in export_onnx(tiny("gru"), "gru").graph.node}
    assert "GRU" in operators and "Loop" not in operators


def test_a_multi_head_transformer_exports_with_static_shapes_and_fused_layer_norms():
    hp = {
        "family": "transformer",
        "context_length": CONTEXT,
        "learning_rate": 1e-3,
        "hidden_size": 96,
        "layers": 2,
        "dropout": 0.1,
        "activation": "gelu",
    }
    model = compile_model(build_language_model(hp, VOCAB), 1e-3)
    proto = export_onnx(model, "transformer")
    operators = [node.op_type for node in proto.graph.node]
    assert operators.count("LayerNormalization") == 5 and operators.count("Softmax") == 2
    assert "Shape" not in operators
    x, y = probe()
    parity, _, _ = verify(model, session(proto.SerializeToString()), x, (x, y), 100.0)
    assert parity.max_abs_difference <= 1e-4 and parity.argmax_agreement == 1.0


def test_a_perturbed_onnx_file_fails_parity():
    model = tiny("conv")
    proto = export_onnx(model, "conv")
    largest = max(proto.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
    weights = numpy_helper.to_array(largest).copy()
    weights += np.random.default_rng(0).normal(0, 0.2, weights.shape).astype(weights.dtype)
    largest.CopyFrom(numpy_helper.from_array(weights, largest.name))
    onnx.checker.check_model(proto)
    x, y = probe()
    _, _, checks = verify(model, session(proto.SerializeToString()), x, (x, y), 100.0)
    assert not next(c for c in checks if c.name == "parity").passed


def test_an_untrained_model_does_not_beat_the_unigram_baseline():
    model = tiny("gru")
    text_ids = np.tile(np.arange(3, dtype=np.int32), 400)
    baseline = unigram_loss(text_ids, text_ids, VOCAB)
    x = text_ids[: 8 * CONTEXT].reshape(8, CONTEXT)
    y = text_ids[1 : 8 * CONTEXT + 1].reshape(8, CONTEXT)
    _, loss, checks = verify(
        model, session(export_onnx(model, "gru").SerializeToString()), x, (x, y), baseline
    )
    gate = next(c for c in checks if c.name == "better_than_unigram")
    assert not gate.passed and loss > baseline


@pytest.mark.parametrize("family", FAMILIES)
def test_the_step_graph_gives_the_windowed_logits_one_token_at_a_time(family):
    model = tiny(family)
    window = session(export_onnx(model, family).SerializeToString())
    step_proto = export_step_onnx(model, family)
    if family == "conv":
        assert step_proto is None
        assert check_step_graph(window, None, probe()[0]).passed
        return
    step = session(step_proto.SerializeToString())
    check = check_step_graph(window, step, probe()[0])
    assert check.passed and check.details["max_abs_difference"] <= 1e-4, check
    # Greedy text from the step graph is the windowed graph's while the context holds it.
    prompt = [1, 2, 3, 4]
    rng = np.random.default_rng(0)
    bounded = family == "transformer"
    stepped, _ = sample(StepDecoder(step, CONTEXT, bounded), prompt, CONTEXT - 4, 0.0, rng)
    windowed, _ = sample(WindowDecoder(window, CONTEXT), prompt, CONTEXT - 4, 0.0, rng)
    assert stepped == windowed


def test_a_full_transformer_cache_gives_the_windowed_logits_of_the_tokens_it_holds():
    """Past its learned positions the cache starts again from the last half context; at every
    step its logits are the windowed graph's over exactly the tokens it then holds."""
    model = tiny("transformer")
    window = session(export_onnx(model, "transformer").SerializeToString())
    step = session(export_step_onnx(model, "transformer").SerializeToString())
    decoder = StepDecoder(step, CONTEXT, bounded=True)
    prompt = [1 + n % (VOCAB - 1) for n in range(40)]
    logits = decoder.start(prompt)
    held = prompt[-CONTEXT:]
    restarts = 0
    for _ in range(3 * CONTEXT):
        expected = WindowDecoder(window, CONTEXT).start(held)
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
        assert decoder.cached == len(held) <= CONTEXT
        token = int(np.argmax(logits))
        if len(held) >= CONTEXT:
            held, restarts = [*held, token][-(CONTEXT // 2) :], restarts + 1
        else:
            held = [*held, token]
        logits = decoder.step(token)
    # The 40-token prompt filled the cache at once; then every half context started it again.
    assert restarts == 1 + (3 * CONTEXT - 1) // (CONTEXT // 2 + 1)


def test_an_empty_prompt_is_refused_rather_than_fed_to_onnxruntime():
    model = tiny("gru")
    step = session(export_step_onnx(model, "gru").SerializeToString())
    with pytest.raises(ValueError, match="at least one token"):
        StepDecoder(step, CONTEXT, bounded=False).start([])
