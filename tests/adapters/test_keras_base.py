"""The base in Keras against its ONNX graph: with a zero adapter the logits are the graph's, and
an adapter's matrices given to the adapted graph as inputs change its logits as they change
Keras' (the export's parity); the adapter's files round-trip and refuse a changed file."""

import numpy as np
import pytest

from thunder_dagster.adapters.files import Adapter, AdapterFileError, graph_feeds
from thunder_dagster.adapters.keras_base import AdapterShape, KerasBase
from thunder_dagster.instruct.base import BaseFile
from thunder_dagster.instruct.builds import session_for
from thunder_dagster.instruct.decoding import BaseModel
from thunder_dagster.instruct.graphs import build_graph
from thunder_dagster.instruct.reference import float_weights
from thunder_dagster.instruct.tokens import BaseTokenizer, Message

POSITIONS = 256
SHAPE = AdapterShape(rank=4, alpha=8.0, targets=("attn_q", "attn_v", "ffn_up", "ffn_down"))


@pytest.fixture(scope="module")
def base():
    return BaseFile()


@pytest.fixture(scope="module")
def keras_base(base):
    return KerasBase(float_weights(base), SHAPE, positions=POSITIONS)


@pytest.fixture(scope="module")
def adapted_graph(base):
    """The exact (float output) adapted graph: the parity reference's layout."""
    data = build_graph(base, positions=POSITIONS, exact=True, adapted=True).SerializeToString()
    return BaseModel(session_for(data), BaseTokenizer(base), base.spec, POSITIONS)


def prompt(base) -> list[int]:
    return BaseTokenizer(base).chat_prompt([Message("user", "What is the capital of France?")])


def keras_last_logits(model: KerasBase, ids: list[int]) -> np.ndarray:
    return model.logits(model.hidden(np.asarray([ids], np.int32))).numpy()[0, -1]


def graph_last_logits(model: BaseModel, ids: list[int]) -> np.ndarray:
    logits, _ = next(model.logits_along(ids, 1))
    return logits


def test_keras_with_a_zero_adapter_gives_the_onnx_graphs_logits(base, keras_base):
    ids = prompt(base)
    data = build_graph(base, positions=POSITIONS, exact=True).SerializeToString()
    plain = BaseModel(session_for(data), BaseTokenizer(base), base.spec, POSITIONS)
    expected = graph_last_logits(plain, ids)
    got = keras_last_logits(keras_base, ids)
    assert np.abs(got - expected).max() < 1e-3
    assert int(np.argmax(got)) == int(np.argmax(expected))
    assert BaseTokenizer(base).decode([int(np.argmax(got))]).strip() == "The"


def test_an_adapter_given_to_the_adapted_graph_changes_its_logits_as_it_changes_keras(
    base, keras_base, adapted_graph
):
    ids = prompt(base)
    zero = graph_last_logits(adapted_graph.with_adapter(graph_feeds(None, base.spec)), ids)
    rng = np.random.default_rng(0)
    for variable in keras_base.trainable_variables:
        variable.assign(rng.normal(0, 0.02, variable.shape).astype(np.float32))
    try:
        adapter = Adapter(SHAPE, keras_base.adapter_arrays())
        expected = keras_last_logits(keras_base, ids)
        got = graph_last_logits(adapted_graph.with_adapter(graph_feeds(adapter, base.spec)), ids)
    finally:
        for variable in keras_base.trainable_variables:
            if "lora_kernel_b" in variable.path:
                variable.assign(np.zeros(variable.shape, np.float32))
    assert np.abs(got - expected).max() < 1e-3
    assert np.abs(got - zero).max() > 0.1  # the adapter changed the answer's logits
    assert adapter.parameters == 30 * 4 * (576 + 576 + 576 + 192 + 576 + 1536 + 1536 + 576)


def test_adapter_files_round_trip_and_a_changed_file_is_refused(base, tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "0.attn_q": (rng.normal(size=(576, 2)), rng.normal(size=(2, 576))),
        "29.ffn_down": (rng.normal(size=(1536, 2)), rng.normal(size=(2, 576))),
    }
    arrays = {k: (a.astype(np.float32), b.astype(np.float32)) for k, (a, b) in arrays.items()}
    shape = AdapterShape(rank=2, alpha=2.0, targets=("attn_q", "ffn_down"))
    manifest = Adapter(shape, arrays).save(tmp_path)
    loaded = Adapter.load(tmp_path, base.spec)
    assert loaded.shape == shape and manifest["parameters"] == loaded.parameters
    assert all(np.array_equal(loaded.arrays[k][0], arrays[k][0]) for k in arrays)
    feeds = graph_feeds(loaded, base.spec)
    a, b = feeds["layer0.qkv.adapter_a"], feeds["layer0.qkv.adapter_b"]
    assert a.shape == (576, 2) and b.shape == (2, 576 + 192 + 192)
    assert np.array_equal(b[:, :576], arrays["0.attn_q"][1]) and not b[:, 576:].any()
    assert not feeds["layer1.qkv.adapter_a"].any()  # no adapter there: zeros of rank 1
    (tmp_path / "adapter.npz").write_bytes(b"changed")
    with pytest.raises(AdapterFileError, match="does not match the sha256"):
        Adapter.load(tmp_path, base.spec)
    (tmp_path / "adapter.json").write_text("a README someone left here")
    with pytest.raises(AdapterFileError, match=r"adapter\.json is unreadable"):
        Adapter.load(tmp_path, base.spec)
