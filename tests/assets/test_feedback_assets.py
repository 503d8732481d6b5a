"""The feedback loop in process: daily analysis, its schedule and sensor, fine-tune and
distillation to a challenger, the A/B result and promotion, the cleanup."""

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tests.factories import analyse, deploy_tiny, log, resources
from thunder_dagster.assets import abtests, retraining
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.feedback.experiments import AbTestStore
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.sensors.feedback import retraining_sensor
from thunder_dagster.tracking.registry import MlflowRegistry

# The tests marked clock analyse days: their answers depend on the day and the zone.
clock = pytest.mark.clock


def decision_of(result) -> dict:
    metadata = result.asset_materializations_for_node("training_triggers")[0].metadata
    return {key: value.value for key, value in metadata.items()}


@clock
def test_the_analysis_decides_fine_tune_the_same_way_twice_and_the_sensor_asks_once(home, store):
    day = datetime(2026, 3, 3)
    log(store, 50, day + timedelta(hours=1), score=5)  # exactly 50 positive, confidence 0.7
    log(store, 10, day - timedelta(hours=1), score=5)  # the day before: outside the window
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        first = decision_of(analyse(home, instance, "2026-03-03"))
        assert first["change"] == "fine_tune" and first["learning_rate"] == pytest.approx(1e-4)
        queries = {key: resources(home)[key] for key in ("queries", "thunder")}
        with dg.build_sensor_context(instance=instance, resources=queries) as context:
            tick = retraining_sensor(context)
        (request,) = tick.run_requests
        assert request.run_key == "fine_tune:acme:2026-03-03"
        assert request.job_name == "fine_tune_job" and request.partition_key == "acme"
        config = request.run_config["ops"]["fine_tuned_model"]["config"]
        assert config["learning_rate"] == pytest.approx(1e-4)
        again = decision_of(analyse(home, instance, "2026-03-03"))
        assert {k: again[k] for k in ("change", "reason", "learning_rate")} == {
            k: first[k] for k in ("change", "reason", "learning_rate")
        }
        # The second materialization asks for the same run key: Dagster starts no second run.
        with dg.build_sensor_context(
            instance=instance, cursor=tick.cursor, resources=queries
        ) as context:
            (repeated,) = retraining_sensor(context).run_requests
        assert repeated.run_key == request.run_key


@clock
def test_a_chat_agents_feedback_trains_its_adapter_through_the_adaptation_job(home, store):
    from thunder_dagster.tasks.agents import write_task

    home.create_agent("desk")
    write_task(home.agent_dir("desk"), "chat")
    day = datetime(2026, 3, 3)
    log(store, 50, day + timedelta(hours=1), agent="desk", score=5)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["desk"])
        decided = decision_of(analyse(home, instance, "2026-03-03", agent="desk"))
        assert decided["change"] == "fine_tune" and decided["fires"]
        with dg.build_sensor_context(instance=instance, resources=resources(home)) as context:
            (request,) = retraining_sensor(context).run_requests
        assert request.job_name == "adaptation_job" and request.partition_key == "desk"
        assert request.run_config == {} and request.run_key == "fine_tune:desk:2026-03-03"


@clock
def test_each_day_is_analysed_on_its_own_24_hours_whatever_was_missed(home, store):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        quiet = decision_of(analyse(home, instance, "2026-03-01"))
        assert quiet["change"] == "none" and quiet["reason"].startswith("not enough data")
        log(store, 60, datetime(2026, 3, 2, 12), score=5, confidence=0.9)
        # 2 and 3 March were not analysed: 4 March still looks at 4 March alone.
        later = analyse(home, instance, "2026-03-04")
        stats = later.asset_materializations_for_node("query_log_stats")[0].metadata
        assert stats["window_start_utc"].value == "2026-03-04T00:00:00+00:00"
        assert stats["total_queries"].value == 0 and decision_of(later)["change"] == "none"
        decided = decision_of(analyse(home, instance, "2026-03-02"))
        assert decided["change"] == "fine_tune" and decided["learning_rate"] == pytest.approx(5e-5)


FINE_TUNE = {"learning_rate": 0.02, "epochs": 3, "batch_size": 8, "max_minutes": 2.0}


class RegistryFailingOnce(MlflowRegistry):
    """A registry whose first registration fails as a full disk would; the marker file is the
    state, since resources are immutable."""

    def __init__(self, tracker, marker: Path):
        super().__init__(tracker)
        self.marker = marker

    def register(self, *args, **kwargs):
        calls = self.marker.read_text() if self.marker.exists() else ""
        self.marker.write_text(calls + "call\n")
        if not calls:
            raise OSError("disk full (injected)")
        return super().register(*args, **kwargs)


class TrackingWithFlakyRegistry(MlflowTracking):
    marker: str

    def registry(self, tracker):
        return RegistryFailingOnce(tracker, Path(self.marker))


def test_a_failed_fine_tune_marks_no_rows_and_the_next_one_marks_them_once_and_deploys(
    home, store, tmp_path
):
    deploy_tiny(home, "acme")
    ids = log(store, 80, datetime(2026, 3, 3), score=lambda i: 5 if i % 4 else 2)
    well_rated = {query_id for i, query_id in enumerate(ids) if i % 4}
    marker = tmp_path / "registrations"
    flaky = resources(home)
    flaky["tracking"] = TrackingWithFlakyRegistry(thunder=flaky["thunder"], marker=str(marker))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])

        def fine_tune():
            return dg.materialize(
                [retraining.fine_tuned_model],
                partition_key="acme",
                instance=instance,
                resources=flaky,
                run_config={"ops": {"fine_tuned_model": {"config": FINE_TUNE}}},
                raise_on_error=False,
            )

        # One attempt (seed 004): the failed registration fails the run, and nothing is used.
        failed = fine_tune()
        assert not failed.success and marker.read_text().count("call") == 1
        assert store.used_by(failed.run_id) == []
        assert read_pointer(home.deployments_dir("acme"), "challenger") is None
        result = fine_tune()  # the next day's run
    assert result.success and marker.read_text().count("call") == 2
    assert set(store.used_by(result.run_id)) == well_rated
    assert store.fine_tune_examples("acme", 1000) == []
    challenger = read_pointer(home.deployments_dir("acme"), "challenger")
    assert challenger.version == "1.0.1"
    card = ModelCard.read(challenger.model_dir)
    assert card.change == "fine_tune" and card.examples == len(well_rated)
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks.values()) and len(checks) == 4


def test_too_little_data_stops_the_fine_tune_without_a_retry(home, store):
    deploy_tiny(home, "acme")
    log(store, 2, datetime(2026, 3, 3), score=5)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = dg.materialize(
            [retraining.fine_tuned_model],
            partition_key="acme",
            instance=instance,
            resources=resources(home),
            raise_on_error=False,
        )
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert not result.success and retries == []
    assert "not enough data" in failures[0].event_specific_data.error.message
    assert store.used_by(result.run_id) == []


def test_distillation_trains_a_smaller_student_on_confident_teacher_answers(home, store):
    deploy_tiny(home, "acme", hidden=64)
    confident = {"fallback": True, "confidence": 0.3, "teacher_confidence": 0.9}
    log(store, 120, datetime(2026, 3, 3), model_version="9.0.0", **confident)
    unsure = {"fallback": True, "confidence": 0.3, "teacher_confidence": 0.5}
    log(store, 50, datetime(2026, 3, 3), response="zzzz", **unsure)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = dg.materialize(
            [retraining.distilled_model],
            partition_key="acme",
            instance=instance,
            resources=resources(home),
            run_config={
                "ops": {
                    "distilled_model": {
                        "config": {"epochs": 4, "batch_size": 16, "max_minutes": 2.0}
                    }
                }
            },
        )
    assert result.success
    challenger = read_pointer(home.deployments_dir("acme"), "challenger")
    card = ModelCard.read(challenger.model_dir)
    assert challenger.version == "1.1.0" and card.change == "distillation"
    assert card.params["hidden_size"] == 32 and card.examples == 120


def ab_run(home, instance, selection=None, run_config=None):
    if run_config is None:
        run_config = (
            {} if selection else {"ops": {"ab_test_result": {"config": {"min_sample": 100}}}}
        )
    return dg.materialize(
        [abtests.ab_test_result, abtests.champion_promotion],
        selection=selection,
        partition_key="acme",
        instance=instance,
        resources=resources(home),
        run_config=run_config,
        raise_on_error=False,
    )


def serve_ab(store, champion_positive: int, challenger_positive: int, challenger="1.1.0"):
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    log(store, 200, now, score=lambda i: 5 if i < champion_positive else 2)
    log(
        store,
        200,
        now,
        score=lambda i: 5 if i < challenger_positive else 2,
        variant="challenger",
        model_version=challenger,
    )


def test_a_significantly_better_challenger_is_promoted(home, store):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    serve_ab(store, champion_positive=100, challenger_positive=140)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = ab_run(home, instance)
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        assert check.passed
        tested = result.asset_materializations_for_node("ab_test_result")[0].metadata
        plot = tested["comparison"].value
        assert plot.startswith("![A/B comparison](data:image/png;base64,")
        assert base64.b64decode(plot.split(",", 1)[1].rstrip(")"))[:4] == b"\x89PNG"
        assert read_pointer(home.deployments_dir("acme")).version == "1.1.0"
        promoted = result.asset_materializations_for_node("champion_promotion")[0].metadata
        assert promoted["champion_version"].value == "1.1.0"
        assert read_pointer(home.deployments_dir("acme"), "challenger") is None


def test_a_challenger_no_better_is_retired_and_promotion_refuses_to_run_alone(home, store):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    serve_ab(store, champion_positive=100, challenger_positive=104)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = ab_run(home, instance)
        (check,) = result.get_asset_check_evaluations()
        assert not check.passed
        assert not result.asset_materializations_for_node("champion_promotion")
        assert read_pointer(home.deployments_dir("acme"), "challenger") is None
        assert read_pointer(home.deployments_dir("acme")).version == "1.0.0"
        deploy_tiny(home, "acme", seed=2, role="challenger")
        alone = ab_run(home, instance, selection=["champion_promotion"])
        assert not alone.success
        assert read_pointer(home.deployments_dir("acme")).version == "1.0.0"


def test_the_agents_ab_test_sets_the_sample_and_ends_promoted_or_stopped_then_retired(home, store):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    tests = AbTestStore(store.engine)
    # 200 rated answers a variant: short of this test's 300, so the evaluation waits.
    waiting = tests.create("acme", "1.0.0", "1.1.0", 0.5, "ops", min_sample=300)
    serve_ab(store, champion_positive=100, challenger_positive=140)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = ab_run(home, instance, run_config={})
        tested = result.asset_materializations_for_node("ab_test_result")[0].metadata
        assert tested["decision"].value == "continue" and tested["min_sample"].value == 300
        assert tested["ab_test"].value == waiting.id and tests.get(waiting.id).running
        tests.end(waiting.id, "stopped", "ops", "seen enough")
        promoting = tests.create("acme", "1.0.0", "1.1.0", 0.5, "ops", min_sample=150)
        serve_ab(store, champion_positive=100, challenger_positive=140)
        assert ab_run(home, instance, run_config={}).success
        assert tests.get(promoting.id).status == "promoted"
        assert read_pointer(home.deployments_dir("acme")).version == "1.1.0"
        # A stopped test retires its challenger at the next evaluation, however it was doing.
        deploy_tiny(home, "acme", seed=2, role="challenger")
        stopped = tests.create("acme", "1.1.0", "1.2.0", 0.5, "ops")
        tests.end(stopped.id, "stopped", "key:abc (ops)", "a bad week")
        result = ab_run(home, instance, run_config={})
        tested = result.asset_materializations_for_node("ab_test_result")[0].metadata
        assert tested["decision"].value == "retire"
        assert "stopped by key:abc (ops): a bad week" in tested["reason"].value
        assert read_pointer(home.deployments_dir("acme"), "challenger") is None
        assert tests.get(stopped.id).status == "stopped"


def age(store, test_id: str, days: float) -> None:
    """Move a test's start `days` into the past, as if it had run that long."""
    from thunder_dagster.feedback.schema import AbTestRow

    with store.sessions.begin() as session:
        row = session.get(AbTestRow, test_id)
        row.created_at = datetime.now(UTC) - timedelta(days=days)


def test_a_fine_tune_releases_its_challenger_under_a_test_of_its_own_superseding_the_last(
    home, store
):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    tests = AbTestStore(store.engine)
    earlier = tests.create("acme", "1.0.0", "1.1.0", 0.5, "ops")
    log(store, 80, datetime(2026, 3, 3), score=5)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = dg.materialize(
            [retraining.fine_tuned_model],
            partition_key="acme",
            instance=instance,
            resources=resources(home),
            run_config={"ops": {"fine_tuned_model": {"config": FINE_TUNE | {"ab_max_days": 7}}}},
        )
    assert result.success
    challenger = read_pointer(home.deployments_dir("acme"), "challenger")
    running = tests.running("acme")
    assert (running.challenger_version, running.champion_version) == (challenger.version, "1.0.0")
    assert (running.split, running.max_days, running.created_by) == (0.2, 7, f"run {result.run_id}")
    replaced = tests.get(earlier.id)
    assert replaced.status == "superseded" and challenger.version in replaced.reason
    metadata = result.asset_materializations_for_node("fine_tuned_model")[0].metadata
    assert metadata["ab_test"].value == running.id
    assert metadata["replaced_test"].value == f"{earlier.id} (superseded)"


@clock
def test_the_rules_start_no_challenger_while_one_is_under_test_and_an_undecided_test_ends(
    home, store
):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    tests = AbTestStore(store.engine)
    running = tests.create("acme", "1.0.0", "1.1.0", 0.2, "run abc", min_sample=1000)
    log(store, 50, datetime(2026, 3, 3, 1), score=5)  # the fine-tune rule fires on its own
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        held = decision_of(analyse(home, instance, "2026-03-03"))
        assert held["change"] == "none" and held["reason"].startswith("fine_tune would fire")
        assert f"A/B test {running.id} of 1.1.0" in held["reason"]
        assert "(day 0.0 of 14) has not concluded" in held["reason"]
        queries = {key: resources(home)[key] for key in ("queries", "thunder")}
        with dg.build_sensor_context(instance=instance, resources=queries) as context:
            assert retraining_sensor(context).run_requests == []
        # Past its 14 days without a verdict, the test no longer holds the loop back...
        age(store, running.id, days=15)
        assert decision_of(analyse(home, instance, "2026-03-03"))["change"] == "fine_tune"
        # ...and the evaluation ends it inconclusive, its challenger retired.
        serve_ab(store, champion_positive=100, challenger_positive=140)  # 200 a side, < 1000
        result = ab_run(home, instance, run_config={})
        tested = result.asset_materializations_for_node("ab_test_result")[0].metadata
        assert tested["decision"].value == "retire"
        assert "ran out of days undecided" in tested["reason"].value
    assert tests.get(running.id).status == "inconclusive"
    assert read_pointer(home.deployments_dir("acme"), "challenger") is None
    assert read_pointer(home.deployments_dir("acme")).version == "1.0.0"


@clock
def test_a_classifier_is_relabelled_when_people_correct_it_and_one_key_cannot_fire_it(home, store):
    from thunder_dagster.tasks.agents import write_task

    day = datetime(2026, 3, 3, 1, tzinfo=UTC)
    for agent in ("topics", "solo"):
        home.create_agent(agent)
        write_task(home.agent_dir(agent), "classification")
    # Twenty people each correct one answer, and one confirms hers: the rule fires.
    for query_id in log(store, 21, day, agent="topics", response="baking"):
        store.add_feedback(query_id, 1, label="sailing")
    store.add_feedback(query_id, 5, label="baking")
    # One key corrects 60 answers of its own: five of them count, from one person.
    for query_id in log(store, 60, day, agent="solo", user_id="key-one", response="baking"):
        store.add_feedback(query_id, 1, label="music")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["topics", "solo"])
        decided = decision_of(analyse(home, instance, "2026-03-03", agent="topics"))
        assert decided["change"] == "relabel" and decided["fires"]
        assert decided["reason"] == "corrections 20 >= 20 (from 20 users)"
        alone = decision_of(analyse(home, instance, "2026-03-03", agent="solo"))
        assert alone["change"] == "none"
        assert alone["reason"].endswith("corrections 5 < 20")
        queries = {key: resources(home)[key] for key in ("queries", "thunder")}
        with dg.build_sensor_context(instance=instance, resources=queries) as context:
            (request,) = retraining_sensor(context).run_requests
    assert request.job_name == "relabel_job" and request.partition_key == "topics"
    assert request.run_key == "relabel:topics:2026-03-03" and request.run_config == {}
