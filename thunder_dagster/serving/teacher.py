"""API B (seed 004): an external teacher behind an OpenAI-compatible chat-completions endpoint,
called through the official `openai` client when the local model is unsure and the agent has
no local teacher. The server imports this module only when THUNDER_TEACHER_URL is set.

One answer has a time budget, retries included: timeouts, connection errors, 429 and 5xx are
tried again with exponential backoff while the budget lasts (the client's own retries are off,
so the budget is this module's). After `failures_to_open` answers in a row that failed, a
circuit breaker stops calling the endpoint for `open_seconds`; then one call is let through,
and its outcome closes or reopens the circuit. When the teacher cannot answer the caller gets
the reason, and the local answer stands.
"""

import math
import threading
import time
from dataclasses import dataclass, field

import openai

from thunder_dagster.feedback.records import EXTERNAL_TEACHER_PREFIX

# Worth another attempt: the endpoint was slow, unreachable, rate-limited or failing.
RETRIED = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)
MODEL_VERSION_WIDTH = 32  # the query log's model_version column
SYSTEM_PROMPT = (
    "Continue the user's text in the same voice and style. Answer with the continuation only."
)


@dataclass(frozen=True)
class TeacherAnswer:
    text: str
    confidence: float | None  # the mean probability of its tokens, when the endpoint says
    model_version: str  # EXTERNAL_TEACHER_PREFIX + the model, as the query log keeps it
    attempts: int


class TeacherUnavailableError(RuntimeError):
    """No answer within the budget, or the circuit is open: the message says which."""


class CircuitOpenError(TeacherUnavailableError):
    """The endpoint was not called: too many answers in a row failed."""


@dataclass(frozen=True)
class TeacherSettings:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)  # a settings object's repr reaches logs
    budget_seconds: float = 10.0
    failures_to_open: int = 5
    open_seconds: float = 30.0
    first_backoff_seconds: float = 0.2


class TeacherConfigError(ValueError):
    """THUNDER_TEACHER_* settings that do not make an endpoint: the message says which."""


def settings_from_environment() -> "TeacherSettings | None":
    """API B's settings from THUNDER_TEACHER_URL, _MODEL, _API_KEY and _SECONDS; None when the
    URL is unset."""
    from thunder_dagster import settings

    if not settings.TEACHER_URL.is_set():
        return None
    if not settings.TEACHER_MODEL.is_set():
        raise TeacherConfigError(
            "THUNDER_TEACHER_URL is set but THUNDER_TEACHER_MODEL is not: name the model API B "
            "should answer with"
        )
    try:
        budget = float(settings.TEACHER_SECONDS.value())
    except ValueError:
        budget = -1.0
    if not 0 < budget <= 600:
        raise TeacherConfigError(
            f"THUNDER_TEACHER_SECONDS={settings.TEACHER_SECONDS.value()!r}: give the teacher's "
            "time budget in seconds, above 0 and at most 600"
        )
    return TeacherSettings(
        base_url=settings.TEACHER_URL.value(),
        model=settings.TEACHER_MODEL.value(),
        api_key=settings.TEACHER_API_KEY.value(),
        budget_seconds=budget,
    )


class CircuitBreaker:
    """Closed, open for `open_seconds` after `failures` failures in a row, then half-open: one
    trial call, whose outcome closes or reopens it."""

    def __init__(self, failures: int, open_seconds: float, clock=time.monotonic):
        self.failures_to_open = failures
        self.open_seconds = open_seconds
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_running = False
        self.lock = threading.Lock()

    def state(self) -> str:
        with self.lock:
            return self._state()

    def _state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() - self.opened_at < self.open_seconds else "half-open"

    def allow(self) -> bool:
        with self.lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self.trial_running:
                self.trial_running = True
                return True
            return False

    def succeeded(self) -> None:
        with self.lock:
            self.failures, self.opened_at, self.trial_running = 0, None, False

    def failed(self) -> None:
        with self.lock:
            self.failures += 1
            if self.trial_running or self.failures >= self.failures_to_open:
                self.opened_at = self.clock()
            self.trial_running = False

    def reopens_in(self) -> float:
        with self.lock:
            if self.opened_at is None:
                return 0.0
            return max(0.0, self.open_seconds - (self.clock() - self.opened_at))


class ExternalTeacher:
    def __init__(self, settings: TeacherSettings):
        self.settings = settings
        self.model_version = (EXTERNAL_TEACHER_PREFIX + settings.model)[:MODEL_VERSION_WIDTH]
        self.breaker = CircuitBreaker(settings.failures_to_open, settings.open_seconds)
        # The client's own retries would spend the budget unseen: this module retries.
        self.client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key or "unused",
            max_retries=0,
            timeout=settings.budget_seconds,
        )

    def grade(self, prompt: str, answer: str, rubric: str) -> int:
        """The teacher's grade of `answer` to `prompt` by `rubric`: 1 to 5. TeacherUnavailable-
        Error when it cannot answer, or when its reply holds no grade."""
        reply = self.answer(
            f"Prompt:\n{prompt}\n\nAnswer:\n{answer}", 2, 0.0, system=rubric
        ).text.strip()
        if not reply[:1].isdigit() or not 1 <= int(reply[:1]) <= 5:
            raise TeacherUnavailableError(f"API B's grade {reply[:20]!r} is not a digit 1 to 5")
        return int(reply[:1])

    def answer(
        self, prompt: str, max_tokens: int, temperature: float, system: str = SYSTEM_PROMPT
    ) -> TeacherAnswer:
        """The teacher's continuation of `prompt` (or its reply under another `system`
        instruction), or TeacherUnavailableError with why not."""
        if not self.breaker.allow():
            raise CircuitOpenError(
                f"API B's circuit is open after {self.breaker.failures} failures in a row; "
                f"it is tried again in {self.breaker.reopens_in():.0f} s"
            )
        deadline = time.monotonic() + self.settings.budget_seconds
        backoff, attempts, last = self.settings.first_backoff_seconds, 0, "no attempt"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            try:
                answer = self._ask(prompt, max_tokens, temperature, left, system)
            except RETRIED as error:
                last = _describe(error)
            except Exception as error:  # a 4xx other than 429: asking again will not help
                self.breaker.failed()
                raise TeacherUnavailableError(f"API B refused: {_describe(error)}") from error
            else:
                self.breaker.succeeded()
                return TeacherAnswer(answer[0], answer[1], self.model_version, attempts)
            pause = min(backoff, deadline - time.monotonic())
            if pause <= 0:
                break
            time.sleep(pause)
            backoff *= 2
        self.breaker.failed()
        raise TeacherUnavailableError(
            f"API B gave no answer within {self.settings.budget_seconds:g} s "
            f"({attempts} attempt(s); last: {last})"
        )

    def _ask(self, prompt: str, max_tokens: int, temperature: float, seconds: float, system: str):
        completion = self.client.with_options(timeout=seconds).chat.completions.create(
            model=self.settings.model,
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ],
            max_tokens=max_tokens,
            temperature=temperature,
            logprobs=True,
        )
        choice = completion.choices[0]
        text = choice.message.content or ""
        tokens = (choice.logprobs.content or []) if choice.logprobs else []
        confidence = (
            float(sum(math.exp(token.logprob) for token in tokens) / len(tokens))
            if tokens
            else None
        )
        return text, confidence


def _describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    return f"{type(error).__name__}{f' {status}' if status else ''}"
