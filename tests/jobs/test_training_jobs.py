"""The training jobs' run config split and the prompt job's refusals."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from thunder_dagster.assets.models import TrainingConfig
from thunder_dagster.assets.tuning import SearchConfig
from thunder_dagster.jobs.training import prompt_training_job
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.configs import LEAST_SECONDS
from thunder_dagster.times import utc_now
from thunder_dagster.training_plan import WRAP_UP_SECONDS, training_ops

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def test_training_ops_split_the_minutes_between_search_and_training():
    assert training_ops(4, 10.0) == {
        "tpe_trials": {"config": {"trials": 4, "minutes": 3.0}},
        "keras_model": {"config": {"minutes": 7.0}},
    }
    assert training_ops(None, None, parallel=2)["tpe_trials"] == {"config": {"parallel": 2}}
    # A budget in work: the trials' and the final training's epochs, which the minutes still cap.
    assert training_ops(1, 10.0, epochs=2) == {
        "tpe_trials": {"config": {"trials": 1, "minutes": 3.0, "epochs": 2}},
        "keras_model": {"config": {"minutes": 7.0, "epochs": 2}},
    }


def test_a_run_asked_for_at_a_time_ends_its_search_and_training_by_the_whole_budget():
    started = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    ops = training_ops(None, 10.0, started=started)
    training = 600 - WRAP_UP_SECONDS
    assert ops["tpe_trials"]["config"] == {
        "minutes": 3.0,
        "finish_by": (started + timedelta(seconds=0.3 * training)).isoformat(),
    }
    assert ops["keras_model"]["config"] == {
        "minutes": 7.0,
        "finish_by": (started + timedelta(seconds=training)).isoformat(),
    }


def test_finish_by_cuts_a_steps_minutes_and_never_leaves_it_nothing():
    soon = (utc_now() + timedelta(seconds=90)).isoformat()
    assert 80 < TrainingConfig(minutes=7.0, finish_by=soon).budget().max_seconds <= 90
    assert TrainingConfig(minutes=1.0, finish_by=soon).budget().max_seconds == 60
    settings = SearchConfig(minutes=3.0, finish_by=soon).settings()
    assert 80 / 60 < settings.minutes <= 90 / 60
    past = (utc_now() - timedelta(minutes=5)).isoformat()
    assert TrainingConfig(finish_by=past).seconds() == LEAST_SECONDS


@pytest.mark.parametrize(
    ("finish_by", "says"), [("tomorrow", "not an ISO 8601 time"), ("2026-12-02T10:00", "offset")]
)
def test_a_finish_by_that_is_no_utc_time_fails_naming_the_field(finish_by, says):
    with pytest.raises(dg.Failure, match=f"finish_by: .*{says}"):
        TrainingConfig(finish_by=finish_by).seconds()


def test_an_empty_prompt_fails_with_the_field_named(home):
    with dg.instance_for_test() as instance:
        result = prompt_training_job.execute_in_process(
            run_config={
                "ops": {"prompt_document": {"config": {"agent_id": "bakery", "prompt_text": " "}}}
            },
            resources={"thunder": ThunderHome(root=str(home.root))},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "prompt_text is empty" in failure.step_failure_data.error.message
