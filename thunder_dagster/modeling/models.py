"""The final model: the search's best configuration trained on the training split, and its card."""

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.cards import CARD_NAME, KERAS_NAME, CardMetrics, ModelCard
from thunder_dagster.modeling.search import SearchResult, SearchSettings
from thunder_dagster.modeling.training import Budget, Epoch, train

if TYPE_CHECKING:
    # Only for annotations: TrainedModel, which the assets name, loads without numpy.
    from thunder_dagster.modeling.text import EncodedText


@dataclass(frozen=True)
class TrainedModel:
    agent_id: str
    model_dir: str
    family: str
    params: dict
    context_length: int
    vocab: list[str]
    epochs: list[dict]
    validation_loss: float  # what picked the best epoch
    unigram_loss: float  # on the test split
    dataset_version: str
    warm_started_from: str | None
    seconds: float
    mlflow_run_id: str | None
    validation_fraction: float = 0.1
    test_loss: float | None = None  # on the test split, which selected nothing

    @property
    def keras_path(self) -> Path:
        return Path(self.model_dir) / KERAS_NAME

    @property
    def card_path(self) -> Path:
        return Path(self.model_dir) / CARD_NAME


def train_best(
    search: SearchResult,
    data: "EncodedText",
    budget: Budget,
    seed: int,
    warm_start: bool = True,
    on_epoch=None,
):
    """Train the best configuration; start from the best trial's weights when they were kept.

    Returns the Keras model and its history. The trial's weights came from the same training
    split, so continuing them spends the search's compute instead of throwing it away.
    """
    from thunder_dagster.modeling.backend import keras
    from thunder_dagster.modeling.tuning import build_model

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    warm = search.checkpoint if warm_start and search.checkpoint else None
    if warm is not None and Path(warm).is_file():
        from thunder_dagster.modeling.architectures import load_model

        model = load_model(warm)
    else:
        warm = None
        model = build_model(
            search.best_params, SearchSettings(trials=1, budget=budget), data.vocab_size
        )
    history = train(
        model,
        data,
        search.best_params["context_length"],
        budget,
        seed=seed,
        on_epoch=on_epoch,
        restore_best=True,
    )
    return model, history, warm


def save_model(
    model,
    model_dir: Path,
    agent_id: str,
    search: SearchResult,
    data: "EncodedText",
    epochs: list[Epoch],
    validation_loss: float,
    dataset_version: str,
    warm_started_from: str | None,
    mlflow_run_id: str | None,
    task: str = "generation",
) -> TrainedModel:
    """model.keras and its card in `model_dir`; `task` is the agent's (tasks.TASKS)."""
    from thunder_dagster.modeling.text import unigram_loss
    from thunder_dagster.modeling.training import test_loss

    context_length = int(search.best_params["context_length"])
    params = dict(search.best_params)
    # The weights kept are the best epoch's: its dropout, if the training raised it, is the
    # model's.
    kept = min(epochs, key=lambda epoch: epoch.validation_loss, default=None)
    if kept is not None and kept.dropout is not None:
        params["dropout"] = kept.dropout
    measured = test_loss(model, data, context_length)
    model_dir.mkdir(parents=True, exist_ok=True)
    keras_path = model_dir / KERAS_NAME
    model.save(keras_path)
    trained = TrainedModel(
        agent_id=agent_id,
        model_dir=str(model_dir),
        family=search.best_params["family"],
        params=params,
        context_length=context_length,
        vocab=list(data.vocabulary.tokens),
        epochs=[asdict(epoch) for epoch in epochs],
        validation_loss=validation_loss,
        unigram_loss=unigram_loss(data.train, data.test, data.vocab_size),
        dataset_version=dataset_version,
        warm_started_from=warm_started_from,
        seconds=sum(epoch.seconds for epoch in epochs),
        mlflow_run_id=mlflow_run_id,
        validation_fraction=search.validation_fraction,
        test_loss=measured,
    )
    ModelCard(
        agent_id=agent_id,
        family=trained.family,
        params=trained.params,
        context_length=trained.context_length,
        vocab=tuple(trained.vocab),
        metrics=CardMetrics(
            validation_loss=trained.validation_loss,
            unigram_loss=trained.unigram_loss,
            epochs=len(epochs),
            train_seconds=trained.seconds,
            test_loss=measured,
        ),
        files={KERAS_NAME: sha256_of(keras_path)},
        dataset_version=dataset_version,
        validation_fraction=search.validation_fraction,
        study=search.study_name,
        best_trial=search.best_number,
        mlflow_run_id=mlflow_run_id,
        created_at=datetime.now(UTC).isoformat(),
        task=task,
    ).write(model_dir)
    return trained
