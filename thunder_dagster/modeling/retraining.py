"""The two retraining paths of the feedback loop, on the champion's vocabulary and context.

- fine-tune: the champion's own model trained further on well-rated answers (prompt followed by
  response), at the learning rate the daily rules chose.
- distillation: a smaller student (half the champion's width, one layer, a GRU so it gets a step
  graph) trained from scratch on the teacher's confident answers.

Examples are split by example: the last `validation_split` of them are the test split and as
many before those the validation split. Import this
module where TensorFlow may load; Keras is imported inside the functions.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.feedback.records import TrainingExample
from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.cards import KERAS_NAME, CardMetrics, ModelCard
from thunder_dagster.modeling.models import TrainedModel
from thunder_dagster.modeling.text import EncodedText, Vocabulary, unigram_loss
from thunder_dagster.modeling.training import Budget, test_loss, train
from thunder_dagster.tasks.layouts import format_pair
from thunder_dagster.tasks.registry import task_kind

STUDENT_BASE_RATE = 5e-3
MIN_STUDENT_WIDTH = 32


class NotEnoughDataError(ValueError):
    """Too few examples to train and to validate on: the run stops, and is not retried."""


@dataclass(frozen=True)
class RetrainSettings:
    learning_rate: float
    epochs: int = 3
    batch_size: int = 4
    validation_split: float = 0.2
    max_seconds: float | None = None
    seed: int = 0


def examples_data(
    examples: list[TrainingExample],
    vocabulary: Vocabulary,
    context_length: int,
    split: float,
    task: str = "generation",
) -> EncodedText:
    """The examples in order, the last `split` of them for test and the `split` before those
    for validation (which picks the best epoch); the rest to train on. An instruction or chat
    agent's examples are laid out as its training pairs were (tasks/layouts.py)."""
    texts = [
        format_pair(task, example.prompt, example.response)
        if task_kind(task).pairs
        else f"{example.prompt}{example.response}\n"
        for example in examples
    ]
    held = round(len(texts) * split)
    cut = len(texts) - 2 * held
    parts = ("".join(texts[:cut]), "".join(texts[cut : cut + held]), "".join(texts[cut + held :]))
    if held < 1 or cut < 1 or min(map(len, parts)) <= context_length:
        raise NotEnoughDataError(
            f"not enough data: {len(examples)} examples give {len(parts[0])} training, "
            f"{len(parts[1])} validation and {len(parts[2])} test characters; each needs more "
            f"than the context length {context_length}. Wait for more rated answers."
        )
    return EncodedText(vocabulary, *(vocabulary.encode(part) for part in parts))


def _champion(champion_dir: Path) -> tuple[ModelCard, Vocabulary]:
    card = ModelCard.read(champion_dir)
    return card, Vocabulary(card.vocab)


def _save(
    model,
    out_dir: Path,
    champion: ModelCard,
    params: dict,
    data: EncodedText,
    history,
    change: str,
    examples: int,
    learning_rate: float,
) -> TrainedModel:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / KERAS_NAME)
    baseline = unigram_loss(data.train, data.test, data.vocab_size)
    measured = test_loss(model, data, int(params["context_length"]), batch_size=16)
    epochs = [epoch.__dict__ for epoch in history.epochs]
    trained = TrainedModel(
        agent_id=champion.agent_id,
        model_dir=str(out_dir),
        family=params["family"],
        params=params,
        context_length=int(params["context_length"]),
        vocab=list(data.vocabulary.tokens),
        epochs=epochs,
        validation_loss=history.best_loss,
        unigram_loss=baseline,
        dataset_version=champion.dataset_version,
        warm_started_from=None,
        seconds=history.seconds,
        mlflow_run_id=None,
        test_loss=measured,
    )
    ModelCard(
        agent_id=champion.agent_id,
        family=params["family"],
        params=params,
        context_length=trained.context_length,
        vocab=tuple(trained.vocab),
        metrics=CardMetrics(
            validation_loss=history.best_loss,
            unigram_loss=baseline,
            epochs=len(epochs),
            train_seconds=history.seconds,
            test_loss=measured,
        ),
        files={KERAS_NAME: sha256_of(out_dir / KERAS_NAME)},
        dataset_version=trained.dataset_version,
        change=change,
        parent_version=champion.version,
        task=champion.task,
        examples=examples,
        learning_rate=learning_rate,
        created_at=datetime.now(UTC).isoformat(),
    ).write(out_dir)
    return trained


def _fit(model, data: EncodedText, context_length: int, settings: RetrainSettings, on_epoch):
    """Epochs over the examples (an epoch covers the text about twice), best weights kept."""
    budget = Budget(
        epochs=settings.epochs,
        steps_per_epoch=100_000,
        batch_size=settings.batch_size,
        max_seconds=settings.max_seconds,
        validation_windows=256,
    )
    return train(model, data, context_length, budget, settings.seed, on_epoch, restore_best=True)


def fine_tune(
    champion_dir: Path,
    examples: list[TrainingExample],
    out_dir: Path,
    settings: RetrainSettings,
    on_epoch=None,
) -> tuple[TrainedModel, EncodedText]:
    from thunder_dagster.modeling.architectures import compile_model, load_model
    from thunder_dagster.modeling.backend import keras

    card, vocabulary = _champion(champion_dir)
    data = examples_data(
        examples, vocabulary, card.context_length, settings.validation_split, card.task
    )
    keras.utils.set_random_seed(settings.seed)
    model = compile_model(
        load_model(champion_dir / KERAS_NAME, compile=False), settings.learning_rate
    )
    history = _fit(model, data, card.context_length, settings, on_epoch)
    trained = _save(
        model,
        out_dir,
        card,
        dict(card.params),
        data,
        history,
        "fine_tune",
        len(examples),
        settings.learning_rate,
    )
    return trained, data


def student_params(champion_params: dict) -> dict:
    width = max(MIN_STUDENT_WIDTH, int(champion_params["hidden_size"]) // 2)
    return {**champion_params, "family": "gru", "hidden_size": width, "layers": 1}


def distill(
    champion_dir: Path,
    examples: list[TrainingExample],
    out_dir: Path,
    settings: RetrainSettings,
    on_epoch=None,
) -> tuple[TrainedModel, EncodedText]:
    """The table's learning-rate factor (0.5, 1 or 2 times 1e-4) scales the student's own base
    rate: a student starting from random weights at 1e-4 would learn nothing in its budget."""
    from thunder_dagster.modeling.architectures import build_language_model, compile_model
    from thunder_dagster.modeling.backend import keras

    card, vocabulary = _champion(champion_dir)
    params = student_params(card.params)
    data = examples_data(
        examples, vocabulary, int(params["context_length"]), settings.validation_split, card.task
    )
    keras.utils.set_random_seed(settings.seed)
    rate = STUDENT_BASE_RATE * settings.learning_rate / 1e-4
    model = compile_model(build_language_model(params, len(vocabulary)), rate)
    history = _fit(model, data, int(params["context_length"]), settings, on_epoch)
    trained = _save(
        model, out_dir, card, params, data, history, "distillation", len(examples), rate
    )
    return trained, data
