"""The engine's answers of classification and sentiment agents: a label for a text, logged so
that its query id rates it or corrects it, and the check of a user's corrected label."""

import time
from dataclasses import dataclass

from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.serving.classification import LoadedClassifier, classify
from thunder_dagster.serving.errors import WrongLabel, WrongTask
from thunder_dagster.tasks.registry import task_kind


@dataclass(frozen=True)
class Classification:
    label: str
    probabilities: dict[str, float]
    model_version: str
    task: str
    query_id: str
    variant: str = "champion"


class Classifying:
    """Answerer's classifier methods, on its `models`, `metrics` and `state`."""

    def classify(self, agent_id: str, text: str, user_id: str) -> Classification:
        """The label the user's arm of the agent's A/B split gives the text (the champion, or
        a challenger under test for its share of users), with every label's probability;
        logged, so that its query id rates it or corrects its label."""
        champion = self.classifier(agent_id)
        variant = self.variant(agent_id, self.models(agent_id), user_id)
        model = variant.model if isinstance(variant.model, LoadedClassifier) else champion
        arm = variant.name if model is variant.model else "champion"
        started = time.perf_counter()
        label, probabilities = classify(model, text)
        elapsed = time.perf_counter() - started
        self.metrics.model_seconds.labels(agent_id, arm).observe(elapsed)
        record = QueryRecord(
            agent_id=agent_id,
            user_id=user_id,
            variant=arm,
            model_version=model.deployment.version,
            prompt=text,
            response=label,
            confidence=probabilities[label],
            fallback=False,
            latency_ms=elapsed * 1000,
        )
        query_id = self.state.writer.submit(record)
        version = model.deployment.version
        return Classification(label, probabilities, version, model.task, query_id, arm)

    def check_correction(self, agent_id: str, label: str) -> None:
        """A label a user gives one of the agent's answers: WrongLabel unless the agent is a
        classifier that knows the label."""
        try:
            model = self.classifier(agent_id)
        except WrongTask as error:
            raise WrongLabel(
                f"{error}; a label corrects a classify answer only: rate this answer with a "
                "score alone"
            ) from None
        if label not in model.labels:
            raise WrongLabel(
                f"label {label!r} is not one of agent {agent_id!r}'s labels "
                f"({', '.join(model.labels)}); to add a label, upload labelled examples of it"
            )

    def classifier(self, agent_id: str) -> LoadedClassifier:
        """The agent's serving classifier; WrongTask when it is not a classifier."""
        model = self.models(agent_id).champion
        kind = task_kind(model.task)
        if not isinstance(model, LoadedClassifier):
            raise WrongTask(
                f"agent {agent_id!r} is a {kind.name} agent: it answers "
                f"POST /v1/agents/{agent_id}/{kind.endpoint}; classify needs a classification "
                "or sentiment agent",
                kind.name,
                kind.endpoint,
            )
        return model
