import dagster as dg
from pydantic import Field

from thunder_dagster.adapters.releases import adapter_dir
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import links
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import TRAINING_POOL
from thunder_dagster.runtime.releases import test_challenger


class AdaptationConfig(dg.Config):
    minutes: float = Field(
        default=10.0, gt=0, description="The search's time: every trial's training and scoring"
    )
    trials: int = Field(default=6, ge=1, le=50, description="TPE trials, at most")
    teacher_questions: int = Field(
        default=50,
        ge=0,
        description="Chunks the teacher (THUNDER_TEACHER_URL) is asked a question about in one "
        "run; its lessons are kept, so a chunk is asked about once",
    )
    answers: int = Field(
        default=500, ge=0, description="Rated and taught answers read from the query log, each"
    )


def trials_table(trials) -> str:
    rows = [
        f"| {t.number} | {t.held_out_loss:.4f} | {t.params['rank']} | {t.params['targets']} | "
        f"{t.params['learning_rate']:.2g} | {t.report.steps} | {t.report.tokens_per_second:.0f} |"
        for t in trials
    ]
    header = "| trial | held-out loss | rank | targets | learning rate | steps | tokens/s |"
    return "\n".join([header, "|---|---|---|---|---|---|---|", *rows])


def _teacher_of_an_adapted_agent(home, agent_id: str):
    """The external teacher (None without THUNDER_TEACHER_URL) for a chat or instruction
    agent; a Failure saying why for an agent of another task."""
    from thunder_dagster.serving.teacher import (
        ExternalTeacher,
        TeacherConfigError,
        settings_from_environment,
    )
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.tasks.registry import task_kind

    with failing_on(AgentSettingsError):
        task = read_task(home.agent_dir(agent_id))
    if task_kind(task).model != "instruct":
        raise dg.Failure(
            f"agent {agent_id!r} has task {task!r}: adapters are for chat and instruction "
            "agents; retrain this one with fine_tune_job or distillation_job"
        )
    with failing_on(TeacherConfigError):
        settings = settings_from_environment()
    return ExternalTeacher(settings) if settings is not None else None


def _trial_ended(context, tracker, run_id, trial) -> None:
    """A trial's line in the run's log (progress to watch) and its point in MLflow."""
    context.log.info(
        f"trial {trial.number}: held-out loss {trial.held_out_loss:.4f} with {trial.params}, "
        f"{trial.report.steps} steps at {trial.report.tokens_per_second:.0f} tokens/s "
        f"(stopped by {trial.report.stopped_by})"
    )
    tracker.log_metrics(run_id, {"trial_held_out_loss": trial.held_out_loss}, trial.number)


def _tracked(tracker, run_id, best, report, move) -> None:
    """The best trial's settings and the gates' measures on the MLflow run, which ends failed
    when the gates refused the adapter."""
    tracker.log_params(run_id, best.params)
    tracker.log_metrics(
        run_id,
        {
            **{f"held_out_{part}_loss": loss for part, loss in report.adapted_loss.items()},
            "parity_error": report.parity_error,
            "tokens_per_second": best.report.tokens_per_second,
        },
    )
    tracker.end_run(run_id, "FINISHED" if move else "FAILED")


@dg.asset(
    group_name="adaptation",
    kinds={"keras", "onnx", "mlflow"},
    partitions_def=agents,
    pool=TRAINING_POOL,
    deps=["instruct_base"],
    check_specs=[dg.AssetCheckSpec("passes_the_gates", asset="agent_adapter")],
)
def agent_adapter(
    context: dg.AssetExecutionContext,
    config: AdaptationConfig,
    chunks,
    thunder: ThunderHome,
    queries: QueryLogStore,
    tracking: MlflowTracking,
):
    """A chat or instruction agent's low-rank adapter on the shared instruct base: learnt from
    its chunks (the teacher's questions about them, else their text), its answers rated 4-5,
    its teacher's answers and its users' preferences; searched by TPE within the minutes;
    released when it passes the gates (finite, the graph's logits equal Keras', not worse than
    the champion adapter or the bare base on held-out questions and text): the agent's first
    as the champion, a later one as the challenger an A/B test promotes."""
    from thunder_dagster.adapters.agent import (
        QUESTION_BANK,
        AdaptationBudget,
        adapt_agent,
        load_base_for_adaptation,
        material_for,
    )
    from thunder_dagster.adapters.material import NothingToLearnError
    from thunder_dagster.instruct.base import BaseUnavailableError
    from thunder_dagster.instruct.builds import BaseBuildError

    agent_id, home = context.partition_key, thunder.home()
    teacher = _teacher_of_an_adapted_agent(home, agent_id)
    with failing_on(BaseUnavailableError, BaseBuildError):
        base = load_base_for_adaptation(home.bases_dir)
    budget = AdaptationBudget(
        config.minutes * 60, config.trials, config.teacher_questions, config.answers
    )
    texts = dict(zip(chunks["chunk_id"], chunks["text"], strict=True))
    with queries.open() as store, failing_on(NothingToLearnError):
        bank = home.models_dir(agent_id) / QUESTION_BANK
        material, asked = material_for(agent_id, base, texts, store, teacher, budget, bank)
    context.log.info(f"{agent_id}: {material.describe()}; the teacher was asked {asked} times")
    tracker = tracking.tracker(context.log.warning)
    run_id = tracker.start_run(
        f"{agent_id}-adapter", {"agent": agent_id, "kind": "adapter", "dagster": context.run_id}
    )
    adaptation, report, move, compared = adapt_agent(
        agent_id,
        base,
        material,
        home.deployments_dir(agent_id),
        budget,
        context.log.warning,
        lambda trial: _trial_ended(context, tracker, run_id, trial),
    )
    _tracked(tracker, run_id, adaptation.best, report, move)
    reasons = report.reasons()
    if move is None:
        context.log.warning(f"{agent_id}: adapter refused by the gates: {'; '.join(reasons)}")
    else:
        context.log.info(move.describe())
    tested = {}
    if move is not None and move.role == "challenger":
        champion = read_pointer(adapter_dir(home.deployments_dir(agent_id)))
        tested = test_challenger(context, queries, champion.version, move.deployment.version)
    yield dg.MaterializeResult(
        metadata={
            **tested,
            "released": f"{move.deployment.version} as {move.role}" if move else "no (refused)",
            "compared_with": compared,
            "examples": material.describe(),
            "teacher_questions_asked": asked,
            "trials": dg.MetadataValue.md(trials_table(adaptation.trials)),
            "best_params": dg.MetadataValue.json(adaptation.best.params),
            "held_out_loss": dg.MetadataValue.json(report.adapted_loss),
            "champion_held_out_loss": dg.MetadataValue.json(report.champion_loss),
            "adapter_parameters": adaptation.adapter.parameters,
            "tokens_per_second": round(adaptation.best.report.tokens_per_second, 1),
            **links(mlflow_run=tracker.run_url(run_id)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="passes_the_gates",
                passed=report.passed,
                metadata={
                    "parity_error": report.parity_error,
                    "finite": report.finite,
                    "reasons": "; ".join(reasons) or "none",
                },
            )
        ],
    )
