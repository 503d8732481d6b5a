"""Two released classifier versions of an agent side by side, on the same labelled texts: the
test split of the agent's newest labelled examples. For each version: accuracy and macro F1,
per-label F1, the confusion matrix, latency per text and size on disk; each version loaded as
the server loads it (its hashes checked, a probe through it)."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.deployments.comparison import ComparisonError, released_deployment
from thunder_dagster.modeling.cards import ClassifierMetrics, ModelCard
from thunder_dagster.modeling.evaluation import measure, split_rows
from thunder_dagster.serving.classification import classify, load_classifier
from thunder_dagster.tasks.registry import task_kind


@dataclass(frozen=True)
class ClassifierScore:
    version: str
    change: str
    metrics: ClassifierMetrics  # over the comparison's labels, in its order
    ms_per_text: float
    size_bytes: int


@dataclass(frozen=True)
class ClassifierComparison:
    agent_id: str
    dataset_version: str  # the labelled examples whose test split both were scored on
    test_texts: int
    labels: tuple[str, ...]  # the test split's labels and any other either version predicts
    a: ClassifierScore
    b: ClassifierScore

    def rows(self) -> list[list[str]]:
        """The table both the asset and `thunder compare` show: one row a measure."""
        a, b = self.a, self.b
        rows = [
            ["made by", a.change, b.change],
            ["accuracy", f"{a.metrics.accuracy:.4f}", f"{b.metrics.accuracy:.4f}"],
            ["macro F1", f"{a.metrics.macro_f1:.4f}", f"{b.metrics.macro_f1:.4f}"],
        ]
        rows += [
            [f"F1 of {label}", f"{a.metrics.f1[n]:.3f}", f"{b.metrics.f1[n]:.3f}"]
            for n, label in enumerate(self.labels)
        ]
        rows.append(["latency per text (ms)", f"{a.ms_per_text:.3f}", f"{b.ms_per_text:.3f}"])
        rows.append(
            ["size on disk (KiB)", f"{a.size_bytes / 1024:.1f}", f"{b.size_bytes / 1024:.1f}"]
        )
        return rows

    def confusion_header(self) -> list[str]:
        return [
            "true \\ predicted",
            *(f"{score.version}: {label}" for score in (self.a, self.b) for label in self.labels),
        ]

    def confusion_rows(self) -> list[list[str]]:
        """Both confusion matrices side by side: one row a true label, the first version's
        predictions, then the second's."""
        return [
            [label, *map(str, self.a.metrics.confusion[n]), *map(str, self.b.metrics.confusion[n])]
            for n, label in enumerate(self.labels)
        ]


def labelled_test_split(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    """The test part of labelled examples, as the classifier's training splits them (by a hash
    of each text within its label)."""
    rows = split_rows(texts, labels)[2]
    return [texts[row] for row in rows], [labels[row] for row in rows]


def compare_classifiers(
    models_dir: Path,
    deployments_dir: Path,
    version_a: str,
    version_b: str,
    texts: list[str],
    truth: list[str],
    dataset_version: str,
) -> ClassifierComparison:
    """Both versions' answers to the same labelled texts, measured over the same labels."""
    if version_a == version_b:
        raise ComparisonError(f"both versions are {version_a}: give two different versions")
    if not texts:
        raise ComparisonError("no labelled test texts to compare the classifiers on")
    answers = []
    for version in (version_a, version_b):
        deployment = released_deployment(models_dir, deployments_dir, version)
        card = ModelCard.read(deployment.model_dir)
        if not task_kind(card.task).labelled:
            raise ComparisonError(
                f"version {version} is a {card.task} model, not a classifier: compare two "
                "classifier versions (`thunder versions AGENT` lists them)"
            )
        model = load_classifier(deployment, card)
        started = time.perf_counter()
        predicted = [classify(model, text)[0] for text in texts]
        elapsed = (time.perf_counter() - started) * 1000 / len(texts)
        folder = Path(deployment.model_dir)
        size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
        answers.append((version, card.change, predicted, elapsed, size))
    labels = tuple(sorted(set(truth).union(*(set(answer[2]) for answer in answers))))
    index = {label: number for number, label in enumerate(labels)}
    true = np.asarray([index[label] for label in truth])
    majority = int(np.bincount(true, minlength=len(labels)).argmax())
    scores = [
        ClassifierScore(
            version=version,
            change=change,
            metrics=measure(labels, true, np.asarray([index[p] for p in predicted]), majority),
            ms_per_text=elapsed,
            size_bytes=size,
        )
        for version, change, predicted, elapsed, size in answers
    ]
    return ClassifierComparison(
        models_dir.name, dataset_version, len(texts), labels, scores[0], scores[1]
    )
