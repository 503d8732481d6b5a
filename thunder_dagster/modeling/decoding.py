"""Running exported models token by token: numpy and onnxruntime sessions only, no TensorFlow.

Two decoders share one interface, `start(ids)` then `step(id)`, each returning the logits for
the next token. `StepDecoder` drives the step graph (GRU hidden states, attention key/value
caches), so a new token costs one step; `WindowDecoder` reruns the windowed graph over the last
`context_length` tokens, the fallback for families without a step graph.
"""

import numpy as np

TOKENS = "tokens"
LOGITS = "logits"


def initial_state(onnx_session, batch: int) -> dict[str, np.ndarray]:
    """Zero GRU states and empty key/value caches for the step graph's state inputs."""
    state = {}
    for value in onnx_session.get_inputs()[1:]:
        shape = [batch if dim == "batch" else 0 if dim == "cached" else dim for dim in value.shape]
        state[value.name] = np.zeros(shape, np.float32)
    return state


def advance(onnx_session, tokens: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """Feed `tokens` [batch, steps] after `state`; the logits at each step and the new state."""
    outputs = onnx_session.run(None, {TOKENS: tokens.astype(np.int32), **state})
    names = [value.name for value in onnx_session.get_inputs()[1:]]
    return outputs[0], dict(zip(names, outputs[1:], strict=True))


def step_logits(onnx_session, tokens: np.ndarray, prefill: int) -> np.ndarray:
    """The step graph's logits over `tokens`: the first `prefill` in one call, then one by one."""
    state = initial_state(onnx_session, tokens.shape[0])
    logits, state = advance(onnx_session, tokens[:, :prefill], state)
    pieces = [logits]
    for position in range(prefill, tokens.shape[1]):
        logits, state = advance(onnx_session, tokens[:, position : position + 1], state)
        pieces.append(logits)
    return np.concatenate(pieces, axis=1)


class StepDecoder:
    """A GRU keeps its hidden state for ever. A transformer's cache is bounded by its learned
    positions: when it is full, the last half context is fed again, so each token still costs
    one step on average."""

    def __init__(self, onnx_session, context_length: int, bounded: bool):
        self.session = onnx_session
        self.context_length = context_length
        self.bounded = bounded
        self.ids: list[int] = []
        self.cached = 0
        self.state: dict = {}

    def start(self, ids: list[int]) -> np.ndarray:
        if not ids:
            raise ValueError("a prompt of at least one token is needed to start generating")
        self.ids = list(ids)
        window = self.ids[-self.context_length :] if self.bounded else self.ids
        return self._prefill(window)

    def _prefill(self, window: list[int]) -> np.ndarray:
        self.state = initial_state(self.session, 1)
        logits, self.state = advance(self.session, np.array([window]), self.state)
        self.cached = len(window)
        return logits[0, -1]

    def step(self, token: int) -> np.ndarray:
        self.ids.append(token)
        if self.bounded and self.cached >= self.context_length:
            return self._prefill(self.ids[-(self.context_length // 2) :])
        logits, self.state = advance(self.session, np.array([[token]]), self.state)
        self.cached += 1
        return logits[0, -1]


class WindowDecoder:
    """The windowed graph over the last `context_length` tokens, padded on the right: every
    family is causal, so the padding never reaches the position that is read."""

    def __init__(self, onnx_session, context_length: int):
        self.session = onnx_session
        self.context_length = context_length
        self.ids: list[int] = []

    def start(self, ids: list[int]) -> np.ndarray:
        if not ids:
            raise ValueError("a prompt of at least one token is needed to start generating")
        self.ids = list(ids)
        return self._logits()

    def step(self, token: int) -> np.ndarray:
        self.ids.append(token)
        return self._logits()

    def _logits(self) -> np.ndarray:
        window = self.ids[-self.context_length :]
        tokens = np.zeros((1, self.context_length), dtype=np.int32)
        tokens[0, : len(window)] = window
        return self.session.run([LOGITS], {TOKENS: tokens})[0][0, len(window) - 1]


# A temperature below this picks the likeliest token anyway, and dividing by it overflows.
GREEDY_BELOW = 1e-6


def sample(
    decoder, ids: list[int], max_tokens: int, temperature: float, rng: np.random.Generator
) -> tuple[list[int], list[float]]:
    """Up to `max_tokens` ids after the prompt `ids`, and the model's probability of each.

    Temperature 0 (or below GREEDY_BELOW) is greedy. The confidences are the untempered
    probabilities of the chosen tokens, so they mean the same thing at any temperature.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    produced: list[int] = []
    confidences: list[float] = []
    if max_tokens <= 0:
        return produced, confidences
    logits = decoder.start(ids)
    for number in range(max_tokens):
        shifted = logits.astype(np.float64) - logits.max()
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum()
        if temperature < GREEDY_BELOW:
            choice = int(probabilities.argmax())
        else:
            tempered = np.exp(shifted / temperature)
            choice = int(rng.choice(len(tempered), p=tempered / tempered.sum()))
        produced.append(choice)
        confidences.append(float(probabilities[choice]))
        if number + 1 < max_tokens:
            logits = decoder.step(choice)
    return produced, confidences
