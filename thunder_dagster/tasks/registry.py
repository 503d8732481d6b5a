"""What each task an agent can have means, in one table: the model it gets, the job that trains
it, the asset that releases it, the endpoint that answers, whether the daily rules retrain it
from its users' feedback, and the measures its versions report. Every part that behaves by
task asks this table; a new task is one entry.

- generation: continue text (the character-level generator searched by TPE);
- classification and sentiment: a label for a text, learnt from labelled uploads (a head on
  the sentence encoder with lexical features);
- instruction and chat: answers to questions and instructions from the agent's documents, by
  the pretrained instruct base (instruct/) over the agent's retrieval index: nothing is
  trained before the first answer, the ingest run (documents, chunks, index) is all it needs;
  the daily rules' fine-tune and distillation train its adapter on the base (adapters/).
"""

from dataclasses import dataclass
from typing import Literal

# Jobs that train or retrain a generator, and those that train a classifier.
GENERATOR_JOBS = (
    "training_job",
    "pipeline_job",
    "prompt_training_job",
    "fine_tune_job",
    "distillation_job",
)
CLASSIFIER_JOBS = ("classifier_job", "classifier_pipeline_job")
# The reward model is trained per agent from its rated answers, whatever the agent's task.
REWARD_JOBS = ("reward_job",)


@dataclass(frozen=True)
class TaskKind:
    name: str
    summary: str
    model: Literal["generator", "classifier", "instruct"]
    # The whole graph for the agent, from its uploads to a release: what `thunder train` and
    # the admin API's training endpoint start.
    training_job: str
    deployment_asset: str  # the asset that releases its versions
    endpoint: Literal["generate", "classify"]  # POST /v1/agents/{id}/<endpoint>
    # Whether the daily rules retrain it from its users' feedback: a generator is fine-tuned
    # and distilled from rated and taught answers, a classifier relabelled from corrections.
    learns_from_feedback: bool
    pairs: bool  # its uploads' prompt and response pairs are laid out as its own
    measures: tuple[str, ...]  # what each of its versions reports, on its test split
    run_jobs: tuple[str, ...]  # every job whose runs train one of its models

    @property
    def labelled(self) -> bool:
        """Trained from labelled examples rather than from the documents' text."""
        return self.model == "classifier"


def _generator(name: str, summary: str, pairs: bool) -> TaskKind:
    return TaskKind(
        name=name,
        summary=summary,
        model="generator",
        training_job="pipeline_job",
        deployment_asset="deployment",
        endpoint="generate",
        learns_from_feedback=True,
        pairs=pairs,
        measures=("test_loss",),
        run_jobs=GENERATOR_JOBS,
    )


def _classifier(name: str, summary: str) -> TaskKind:
    return TaskKind(
        name=name,
        summary=summary,
        model="classifier",
        training_job="classifier_pipeline_job",
        deployment_asset="classifier_deployment",
        endpoint="classify",
        learns_from_feedback=True,
        pairs=False,
        measures=("accuracy", "macro_f1"),
        run_jobs=CLASSIFIER_JOBS,
    )


def _instruct(name: str, summary: str) -> TaskKind:
    return TaskKind(
        name=name,
        summary=summary,
        model="instruct",
        training_job="adaptation_pipeline_job",
        deployment_asset="retrieval_index",
        endpoint="generate",
        # Its rated and taught answers train its adapter on the base (adapters/).
        learns_from_feedback=True,
        pairs=True,
        measures=(),
        run_jobs=("adaptation_job", "adaptation_pipeline_job"),
    )


KINDS: dict[str, TaskKind] = {
    kind.name: kind
    for kind in (
        _generator("generation", "continues text in the style of its documents", pairs=False),
        _classifier("classification", "labels a text, learnt from labelled uploads"),
        _classifier("sentiment", "labels a text's sentiment, learnt from labelled uploads"),
        _instruct("instruction", "follows instructions about its documents (the instruct base)"),
        _instruct("chat", "answers questions about its documents in a chat (the instruct base)"),
    )
}
TASKS = tuple(KINDS)
DEFAULT_TASK = "generation"


class UnknownTaskError(ValueError):
    pass


def task_kind(task: str) -> TaskKind:
    """The table's entry for `task`; UnknownTaskError naming the tasks there are."""
    try:
        return KINDS[task]
    except KeyError:
        raise UnknownTaskError(f"task {task!r}: use one of {', '.join(TASKS)}") from None


def training_jobs() -> tuple[str, ...]:
    """Every job that trains a model of some task, the reward model's included: what `thunder
    status`, the failure-rate alert and the operations asset count as training."""
    jobs = [job for kind in KINDS.values() for job in kind.run_jobs] + list(REWARD_JOBS)
    return tuple(dict.fromkeys(jobs))


def pair_tasks() -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.pairs)
