"""The reward model: what users' ratings, and the teacher's grades where ratings are
scarce, say of an agent's answers, learnt so the server can rank candidate answers
(generate's `best_of`)."""

import hashlib
import time
from dataclasses import asdict

import dagster as dg
from pydantic import Field

from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.configs import DeadlineConfig
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import check_results, links
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import TRAINING_POOL
from thunder_dagster.times import utc_now


def rubric_id(rubric: str) -> str:
    """The rubric's short hash: AI grades under another rubric are other grades."""
    return hashlib.sha256(rubric.encode("utf-8")).hexdigest()[:12]


class RewardConfig(DeadlineConfig):
    trials: int = Field(
        default=6,
        ge=1,
        description="TPE trials over the head's learning rate, width, layers, dropout and "
        "activation",
    )
    epochs: int = Field(default=80, ge=1, description="Most epochs of a head's training")
    ai_weight: float = Field(
        default=0.5, ge=0, le=1, description="What one AI grade counts against one user rating"
    )
    max_rated: int = Field(default=5000, ge=10, description="Newest rated answers learnt from")
    grade_unrated: int = Field(
        default=100,
        ge=0,
        description="Unrated answers the external teacher (API B, THUNDER_TEACHER_URL) grades "
        "by the fixed rubric in this run, newest first; 0: none",
    )


def _grade(store, agent_id: str, limit: int, log) -> dict:
    """AI feedback: API B grades up to `limit` unrated answers by the rubric; each grade is
    kept in the store. Nothing is graded without an external teacher; an answer it cannot
    grade is left for the next run, and an open circuit ends the grading."""
    from thunder_dagster.modeling.rewards import RUBRIC
    from thunder_dagster.serving.teacher import (
        CircuitOpenError,
        ExternalTeacher,
        TeacherConfigError,
        TeacherUnavailableError,
        settings_from_environment,
    )

    if limit == 0:
        return {"graded": 0, "grading_failures": 0, "grader": "off (grade_unrated is 0)"}
    with failing_on(TeacherConfigError):
        settings = settings_from_environment()
    if settings is None:
        return {"graded": 0, "grading_failures": 0, "grader": "none (THUNDER_TEACHER_URL unset)"}
    teacher = ExternalTeacher(settings)
    graded = failed = 0
    for query_id, prompt, answer in store.ungraded_answers(agent_id, rubric_id(RUBRIC), limit):
        try:
            score = teacher.grade(prompt, answer, RUBRIC)
        except CircuitOpenError as error:
            log.warning(f"AI grading stopped: {error}")
            failed += 1
            break
        except TeacherUnavailableError as error:
            log.warning(f"answer {query_id} not graded: {error}")
            failed += 1
            continue
        store.add_ai_grade(query_id, rubric_id(RUBRIC), score, teacher.model_version)
        graded += 1
    return {"graded": graded, "grading_failures": failed, "grader": teacher.model_version}


@dg.asset(
    group_name="rewards",
    kinds={"keras", "onnx", "mlflow"},
    partitions_def=agents,
    pool=TRAINING_POOL,
    check_specs=[
        dg.AssetCheckSpec(name, asset="reward_model", blocking=True)
        for name in ("parity", "finite_outputs", "better_than_chance")
    ],
)
def reward_model(
    context: dg.AssetExecutionContext,
    config: RewardConfig,
    thunder: ThunderHome,
    encoder: SentenceEncoderResource,
    queries: QueryLogStore,
    tracking: MlflowTracking,
):
    """A head on the sentence vectors of a prompt, an answer and their product that predicts
    the 1-5 score a user gives the answer: learnt from the query log's rated answers and the
    external teacher's grades by a fixed rubric (weighted `ai_weight`), searched by TPE over
    the head's space, judged on held-out human ratings by Spearman's correlation and pairwise
    accuracy, exported to ONNX and, once its checks pass, pointed at by
    deployments/<agent>/reward.json for the server's best-of-n."""
    from thunder_dagster.deployments.rewards import RewardPointer
    from thunder_dagster.modeling.builds import RewardPlan, build_reward_model
    from thunder_dagster.modeling.rewards import AI, HUMAN, RUBRIC, RatedAnswer, RewardDataError

    home = thunder.home()
    agent_id = context.partition_key
    with queries.open() as store:
        grading = _grade(store, agent_id, config.grade_unrated, context.log)
        human = store.rated_answers(agent_id, config.max_rated)
        graded = store.ai_graded_answers(agent_id, rubric_id(RUBRIC), config.max_rated)
    rated = [RatedAnswer(p, a, int(s), HUMAN) for _, p, a, s in human]
    rated += [RatedAnswer(p, a, int(s), AI) for _, p, a, s in graded]
    context.log.info(
        f"{len(human)} rated answers and {len(graded)} AI grades ({grading['graded']} new "
        f"from {grading['grader']})"
    )
    started = time.monotonic()
    sentence = encoder.encoder()
    tracker = tracking.tracker(context.log.warning)
    version = f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{context.run.run_id[:8]}"
    plan = RewardPlan(config.trials, config.epochs, config.ai_weight, config.seconds(), config.seed)
    tags = {"agent_id": agent_id, "encoder": sentence.version, "dagster_run_id": context.run.run_id}
    with failing_on(RewardDataError):
        built = build_reward_model(
            agent_id,
            rated,
            sentence,
            plan,
            home.models_dir(agent_id) / "rewards" / version,
            rubric_id(RUBRIC),
            tracker,
            tags,
        )
    card, export, metrics = built.card, built.export, built.card.metrics
    if export.passed:
        RewardPointer(
            agent_id=agent_id,
            version=card.version,
            onnx_path=export.onnx_path,
            onnx_sha256=export.onnx_sha256,
            encoder=card.encoder,
            deployed_at=utc_now().isoformat(),
        ).write(home.deployments_dir(agent_id))
        context.log.info(f"reward model {card.version} serves best-of-n for {agent_id}")
    else:
        failed = [check.name for check in export.checks if not check.passed]
        context.log.warning(f"reward model {card.version} failed {failed}: the last one serves")
    yield dg.Output(
        asdict(card),
        metadata={
            "spearman": dg.MetadataValue.float(metrics.spearman),
            "pairwise_accuracy": dg.MetadataValue.float(metrics.pairwise_accuracy),
            "pairs": metrics.pairs,
            "held_out": metrics.held_out,
            "trained_on_human": metrics.trained_on_human,
            "trained_on_ai": metrics.trained_on_ai,
            "ai_grades_new": grading["graded"],
            "ai_grading_failures": grading["grading_failures"],
            "grader": grading["grader"],
            "params": dg.MetadataValue.json(card.params),
            "seconds": dg.MetadataValue.float(round(time.monotonic() - started, 1)),
            "served": export.passed,
            "max_abs_difference": dg.MetadataValue.float(export.max_abs_difference),
            "model_dir": dg.MetadataValue.path(str(built.folder)),
            **links(mlflow_run=tracker.run_url(card.mlflow_run_id)),
        },
    )
    yield from check_results(export.checks)
