"""The reward model's core on a hidden preference: answers about the agent's own subject
(baking) are rated high, others low; the model learns it from human ratings and AI grades and
ranks held-out human-rated answers the same way."""

import random

import pytest

from tests.factories import sentence_encoder
from thunder_dagster.modeling.rewards import (
    AI,
    RatedAnswer,
    RewardDataError,
    features,
    pairwise_accuracy,
    to_score,
    train_reward_model,
)

PROMPTS = ["what should I do today", "any advice for the morning", "tell me something useful"]
ON_TOPIC = ["knead the dough and proof it", "preheat the oven for the bread", "dust the loaf"]
OFF_TOPIC = ["the train leaves at noon", "paint the fence blue", "the match ended in a draw"]


def rated(count: int, seed: int = 0) -> list[RatedAnswer]:
    rng = random.Random(seed)
    found = []
    for n in range(count):
        prompt = f"{rng.choice(PROMPTS)} ({n})"
        good = rng.random() < 0.5
        answer = f"{rng.choice(ON_TOPIC if good else OFF_TOPIC)}, note {n}"
        score = rng.choice([4, 5]) if good else rng.choice([1, 2])
        found.append(RatedAnswer(prompt, answer, score, AI if n % 4 == 3 else "human"))
    return found


def test_the_reward_model_learns_the_hidden_preference(tmp_path):
    encoder = sentence_encoder(str(tmp_path / "encoders"))
    model, params, metrics = train_reward_model(rated(160), encoder.encode, trials=3, epochs=60)
    assert metrics.held_out >= 15 and metrics.trained_on_ai > 0 and metrics.pairs > 10
    # Chance is 0 and 0.5; a 4 against a 5 (or a 1 against a 2) is a coin toss for any model,
    # so the ceiling is well under 1 (0.72 and 0.81 here, 0.66 and 0.76 with seed 1).
    assert metrics.spearman > 0.5 and metrics.pairwise_accuracy > 0.65
    assert set(params) == {"learning_rate", "hidden_size", "layers", "dropout", "activation"}
    prompt = encoder.encode(["what now"])
    good, bad = encoder.encode(["bake the bread in a hot oven"]), encoder.encode(["fix the car"])
    scores = [
        to_score(model(features(prompt, answer), training=False))[0] for answer in (good, bad)
    ]
    assert 1 <= scores[1] < scores[0] <= 5


def test_pairs_come_from_the_same_prompt_when_there_are_any():
    truth = [5, 1, 3, 3]
    assert pairwise_accuracy(["a", "a", "b", "b"], truth, [0.9, 0.1, 0.0, 1.0]) == (1.0, 1)
    assert pairwise_accuracy(["a", "b", "c"], [5, 1, 3], [1, 3, 2]) == (0.0, 3)


def test_too_few_ratings_say_what_is_needed():
    with pytest.raises(RewardDataError, match="needs at least 10"):
        train_reward_model(rated(8), lambda texts: None)
