"""Synthetic users for a live server: `thunder simulate`.

Prompts are cut from the agent's own training data; each simulated user rates some answers,
with a score that rises with the answer's confidence plus noise, so a more confident model
earns more positive feedback. With `prefer_words`, the users' scores follow a hidden
preference instead: an answer that spells two or more of the agent's own frequent words
scores 4 or 5, one that does not 1 or 2 (what a reward model can learn, and best-of-n can
exploit).
Standard library HTTP only: the server is the thing under test.
"""

import json
import re
import statistics
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from thunder_dagster.home import Home

FALLBACK_PROMPTS = ("The ", "We ", "In the ", "Our ", "It is ")


def prompts_for(home: Home, agent_id: str, count: int, rng: np.random.Generator) -> list[str]:
    """Prompts of 8 to 40 characters from the agent's newest dataset, or stock openings."""
    datasets = sorted(home.processed_dir(agent_id).glob("training_data_*.csv"))
    texts = []
    if datasets:
        from thunder_dagster.modeling.text import dataset_documents

        texts = [text for text in dataset_documents(datasets[-1]) if len(text) > 60]
    prompts = []
    for _ in range(count):
        if not texts:
            prompts.append(str(rng.choice(FALLBACK_PROMPTS)))
            continue
        text = texts[int(rng.integers(len(texts)))]
        start = int(rng.integers(0, len(text) - 41))
        prompts.append(text[start : start + int(rng.integers(8, 41))])
    return prompts


def score_for(confidence: float, rng: np.random.Generator) -> int:
    return int(np.clip(round(1 + 4 * confidence + rng.normal(0, 0.8)), 1, 5))


WORD = re.compile(r"[a-z]{5,}")
LIKED_WORDS = 2  # distinct words of the agent's an answer must spell to be liked


def document_words(home: Home, agent_id: str, count: int = 200) -> frozenset[str]:
    """The agent's `count` most frequent words of five letters or more, from its newest
    dataset: what the hidden preference rewards an answer for spelling."""
    datasets = sorted(home.processed_dir(agent_id).glob("training_data_*.csv"))
    if not datasets:
        raise RuntimeError(
            f"agent {agent_id!r} has no dataset to take words from: ingest its uploads first"
        )
    from thunder_dagster.modeling.text import dataset_documents

    counts = Counter(
        word for text in dataset_documents(datasets[-1]) for word in WORD.findall(text.lower())
    )
    return frozenset(word for word, _ in counts.most_common(count))


def preferred_score(answer: str, words: frozenset[str], rng: np.random.Generator) -> int:
    """4 or 5 for an answer that spells LIKED_WORDS or more of `words`, 1 or 2 otherwise."""
    liked = len(set(WORD.findall(answer.lower())) & words) >= LIKED_WORDS
    return int(rng.integers(4, 6)) if liked else int(rng.integers(1, 3))


def _post(url: str, body: dict, timeout: float = 30.0) -> tuple[int, dict | str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def simulate(
    home: Home,
    agent_id: str,
    base_url: str,
    queries: int,
    users: int,
    feedback_rate: float,
    concurrency: int,
    seed: int,
    echo=print,
    prefer_words: bool = False,
) -> dict:
    rng = np.random.default_rng(seed)
    words = document_words(home, agent_id) if prefer_words else None
    base_url = base_url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as response:
            health = json.loads(response.read())
    except OSError as error:
        raise RuntimeError(
            f"no server at {base_url} ({error}): start one with `thunder serve` first"
        ) from error
    if agent_id not in health.get("agents", {}):
        raise RuntimeError(
            f"the server at {base_url} does not serve {agent_id!r}; it serves "
            f"{', '.join(health.get('agents', {})) or 'no agent'}"
        )
    prompts = prompts_for(home, agent_id, queries, rng)
    plan = [
        (
            prompt,
            f"sim-user-{int(rng.integers(users))}",
            float(rng.random()),
            int(rng.integers(1 << 30)),
        )
        for prompt in prompts
    ]

    def one(step):
        prompt, user, draw, feedback_seed = step
        status, answer = _post(
            f"{base_url}/v1/agents/{agent_id}/generate",
            {"prompt": prompt, "max_tokens": 64, "temperature": 0.8, "user_id": user},
        )
        if status != 200:
            return {"error": f"{status}: {answer}"}
        rated = None
        if draw < feedback_rate:
            draws = np.random.default_rng(feedback_seed)
            rated = (
                preferred_score(answer["text"], words, draws)
                if words is not None
                else score_for(answer["confidence"], draws)
            )
            status, stored = _post(
                f"{base_url}/v1/feedback", {"query_id": answer["query_id"], "score": rated}
            )
            if status != 200:
                return {"error": f"feedback {status}: {stored}"}
        return answer | {"score": rated}

    results = []
    with ThreadPoolExecutor(concurrency) as pool:
        for number, result in enumerate(pool.map(one, plan), start=1):
            results.append(result)
            if number % max(1, queries // 10) == 0:
                echo(f"{number}/{queries} queries")
    answers = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    scores = [r["score"] for r in answers if r["score"] is not None]
    by_variant: dict[str, list[int]] = {}
    for r in answers:
        if r["score"] is not None:
            by_variant.setdefault(f"{r['variant']} {r['model_version']}", []).append(r["score"])
    return {
        "agent_id": agent_id,
        "queries": len(results),
        "failed": len(errors),
        "first_errors": errors[:3],
        "variants": dict(Counter(f"{r['variant']} {r['model_version']}" for r in answers)),
        "teacher_fallbacks": sum(1 for r in answers if r["fallback"]),
        "mean_confidence": statistics.fmean(r["confidence"] for r in answers) if answers else 0.0,
        "feedback_given": len(scores),
        "positive_feedback": sum(1 for s in scores if s >= 4),
        "positive_rate_by_variant": {
            name: round(sum(1 for s in rated if s >= 4) / len(rated), 4)
            for name, rated in sorted(by_variant.items())
        },
        "scored_by": "the agent's own words (hidden preference)" if words else "confidence",
        "next": f"thunder analyze {agent_id} --day <today> (or wait for the 02:00 schedule)",
    }
