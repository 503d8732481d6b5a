"""The base's graph answering: the prompt in one pass (prefill), then a token at a time with
the key/value cache, greedy or sampled (temperature, nucleus), stopped by the end-of-turn
token, a stop string or the token budget. One session serves every caller at once (an
onnxruntime session is safe to run from several threads); each answer keeps its own cache.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from thunder_dagster.instruct.base import BaseSpec
from thunder_dagster.instruct.graphs import kv_names
from thunder_dagster.instruct.tokens import BaseTokenizer

FinishReason = Literal["stop", "length"]


class ContextTooLongError(ValueError):
    """The prompt and the answer's budget do not fit the context."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 128
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One generated token: its id, the text it adds (held back while it ends inside a
    character or could start a stop string), and its probability under the model."""

    token: int
    text: str
    probability: float


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: tuple[int, ...]
    prompt_tokens: int
    confidence: float  # mean probability of the chosen tokens (1.0 for an empty answer)
    finish_reason: FinishReason


class BaseModel:
    """The loaded graph and the tokenizer; `positions` is the graph's context bound. On the
    adapted graph, `adapter` holds an agent's adapter inputs (adapters/files.graph_feeds)."""

    def __init__(
        self,
        session,
        tokenizer: BaseTokenizer,
        spec: BaseSpec,
        positions: int,
        adapter: dict[str, np.ndarray] | None = None,
    ):
        self.session = session
        self.tokenizer = tokenizer
        self.spec = spec
        self.positions = positions
        self._adapter = {}
        if adapter is not None:
            from onnxruntime import OrtValue

            self._adapter = {
                name: OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value))
                for name, value in adapter.items()
            }

    def with_adapter(self, adapter: dict[str, np.ndarray]) -> "BaseModel":
        """The same loaded graph answering with another agent's adapter (only its matrices
        are this model's own)."""
        return BaseModel(self.session, self.tokenizer, self.spec, self.positions, adapter)

    def _empty_cache(self, capacity: int) -> list:
        """One answer's key/value cache: for each layer a key and a value buffer of
        `capacity` positions, which the graph reads as past and writes as present in place
        (GroupQueryAttention's shared buffer), so no step copies the cache."""
        from onnxruntime import OrtValue

        shape = (1, self.spec.kv_heads, capacity, self.spec.head_dim)
        return [
            OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=np.float32))
            for _ in range(2 * self.spec.layers)
        ]

    def _run(self, ids: list[int], cache: list, past: int):
        total = past + len(ids)
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.asarray([ids], dtype=np.int64))
        binding.bind_cpu_input("seqlens_k", np.asarray([total - 1], dtype=np.int32))
        binding.bind_cpu_input("total_sequence_length", np.asarray(total, dtype=np.int32))
        binding.bind_output("logits")  # first: get_outputs() lists outputs as bound
        for layer in range(self.spec.layers):
            past_k, past_v, present_k, present_v = kv_names(layer)
            key, value = cache[2 * layer], cache[2 * layer + 1]
            binding.bind_ortvalue_input(past_k, key)
            binding.bind_ortvalue_input(past_v, value)
            binding.bind_ortvalue_output(present_k, key)
            binding.bind_ortvalue_output(present_v, value)
        for name, matrix in self._adapter.items():
            binding.bind_ortvalue_input(name, matrix)
        self.session.run_with_iobinding(binding)
        logits = binding.get_outputs()[0].numpy()
        return logits[0, -1].astype(np.float64), cache

    def check_fits(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.positions:
            raise ContextTooLongError(
                f"{prompt_tokens} prompt tokens and max_tokens {max_tokens} exceed the "
                f"context of {self.positions} tokens: send a shorter prompt or ask for fewer "
                "tokens"
            )

    def logits_along(self, prompt: list[int], steps: int) -> Iterator[tuple[np.ndarray, list]]:
        """The logits at each step of the greedy answer, with the tokens chosen before them
        (the parity check's walk)."""
        logits, cache = self._run(prompt, self._empty_cache(len(prompt) + steps), 0)
        produced: list[int] = []
        for _ in range(steps):
            yield logits, list(produced)
            token = int(np.argmax(logits))
            if token == self.tokenizer.end_id:
                return
            logits, cache = self._run([token], cache, len(prompt) + len(produced))
            produced.append(token)

    def steps(self, prompt: list[int], sampling: Sampling) -> Iterator[Step]:
        """The answer's tokens as they are chosen."""
        self.check_fits(len(prompt), sampling.max_tokens)
        rng = np.random.default_rng(sampling.seed)
        capacity = len(prompt) + sampling.max_tokens
        logits, cache = self._run(prompt, self._empty_cache(capacity), 0)
        past = len(prompt)
        for _ in range(sampling.max_tokens):
            probabilities = _softmax(logits)
            token = _choose(logits, probabilities, sampling, rng)
            yield Step(token, "", float(probabilities[token]))
            if token == self.tokenizer.end_id:
                return
            logits, cache = self._run([token], cache, past)
            past += 1

    def stream(self, prompt: list[int], sampling: Sampling) -> Iterator[Step | Completion]:
        """Steps whose text is ready to show, then the Completion."""
        tokens: list[int] = []
        probabilities: list[float] = []
        text, shown, finish = "", "", "length"
        for step in self.steps(prompt, sampling):
            if step.token == self.tokenizer.end_id:
                finish = "stop"
                break
            tokens.append(step.token)
            probabilities.append(step.probability)
            text = self.tokenizer.decode(tokens)
            cut = _stop_at(text, sampling.stop)
            if cut is not None:
                text, finish = text[:cut], "stop"
                break
            ready = _ready(text, sampling.stop)
            if len(ready) > len(shown):
                yield Step(step.token, ready[len(shown) :], step.probability)
                shown = ready
        if len(text) > len(shown):  # what was held back, now that the answer has ended
            yield Step(tokens[-1], text[len(shown) :], probabilities[-1])
        yield Completion(
            text=text,
            tokens=tuple(tokens),
            prompt_tokens=len(prompt),
            confidence=float(np.mean(probabilities)) if probabilities else 1.0,
            finish_reason=finish,
        )

    def complete(self, prompt: list[int], sampling: Sampling) -> Completion:
        completion = None
        for item in self.stream(prompt, sampling):
            completion = item
        assert isinstance(completion, Completion)
        return completion


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _choose(logits, probabilities, sampling: Sampling, rng) -> int:
    if sampling.temperature <= 0:
        return int(np.argmax(logits))
    tempered = _softmax(logits / sampling.temperature)
    order = np.argsort(tempered)[::-1]
    if sampling.top_p < 1.0:
        cumulative = np.cumsum(tempered[order])
        order = order[: int(np.searchsorted(cumulative, sampling.top_p)) + 1]
    kept = tempered[order] / tempered[order].sum()
    return int(order[rng.choice(len(order), p=kept)])


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    found = [text.find(stop) for stop in stops if stop and stop in text]
    return min(found) if found else None


def _ready(text: str, stops: tuple[str, ...]) -> str:
    """The text safe to show: not ending in half a character, nor in what could begin a stop
    string."""
    ready = text.rstrip("\ufffd")
    for stop in stops:
        for length in range(min(len(stop) - 1, len(ready)), 0, -1):
            if ready.endswith(stop[:length]):
                ready = ready[: len(ready) - length]
                break
    return ready
