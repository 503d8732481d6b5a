"""The training jobs' run config split and the prompt job's refusals."""

import dagster as dg

from thunder_dagster.jobs.training import prompt_training_job, training_ops
from thunder_dagster.resources.home import ThunderHome


def test_training_ops_split_the_minutes_between_search_and_training():
    assert training_ops(4, 10.0) == {
        "tpe_trials": {"config": {"trials": 4, "minutes": 3.0}},
        "keras_model": {"config": {"minutes": 7.0}},
    }
    assert training_ops(None, None, parallel=2)["tpe_trials"] == {"config": {"parallel": 2}}


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
