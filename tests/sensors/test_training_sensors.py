import json

import dagster as dg
import pytest

from tests.factories import deploy_tiny
from thunder_dagster.documents.datasets import latest_dataset, write_training_dataset
from thunder_dagster.home import CATEGORIES
from thunder_dagster.jobs.training import prompt_training_job
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.sensors.training import prompt_followup_sensor, run_priority, training_sensor
from thunder_dagster.tasks.agents import read_task, write_task

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def evaluate(instance, home, cursor=None) -> dg.SensorResult:
    resources = {"thunder": ThunderHome(root=str(home.root))}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return training_sensor(context)


def dataset(home, agent_id: str, categories: tuple[str, ...]) -> None:
    """The state an ingest leaves: a dataset with one document in each of `categories`."""
    rows = [
        (f"doc-{c}", c, f"{c}.txt", 0, f"doc-{c}-0", 0, 40, f"A document filed under {c}.")
        for c in categories
    ]
    write_training_dataset(agent_id, rows, home.processed_dir(agent_id))


def test_training_is_requested_once_per_dataset_version_when_every_category_has_a_document(
    home, monkeypatch
):
    monkeypatch.setenv("THUNDER_TRAINING_DEBOUNCE", "0")
    dataset(home, "full", CATEGORIES)
    dataset(home, "partial", ("reference",))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["full", "partial"])
        first = evaluate(instance, home)
        assert [r.partition_key for r in first.run_requests] == ["full"]
        request = first.run_requests[0]
        assert request.run_key.startswith("train:full:")
        assert request.tags["thunder/trigger"] == "dataset"
        again = evaluate(instance, home, first.cursor)
        assert again.run_requests == []
        skipped = again.skip_reason.skip_message
        assert "partial: no document yet in work_product, communication" in skipped


def test_a_chat_agent_is_never_trained_its_index_is_all_it_needs(home, monkeypatch):
    monkeypatch.setenv("THUNDER_TRAINING_DEBOUNCE", "0")
    for agent, task in (("helpdesk", "chat"), ("writer", "generation")):
        home.create_agent(agent)
        write_task(home.agent_dir(agent), task)
        dataset(home, agent, CATEGORIES)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["helpdesk", "writer"])
        result = evaluate(instance, home)
        assert [r.partition_key for r in result.run_requests] == ["writer"]


def test_a_fresh_dataset_waits_out_the_debounce(home, monkeypatch):
    monkeypatch.setenv("THUNDER_TRAINING_DEBOUNCE", "3600")
    dataset(home, "full", CATEGORIES)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["full"])
        result = evaluate(instance, home)
        assert result.run_requests == []
        assert "younger than the debounce" in result.skip_reason.skip_message


def test_a_dataset_the_champion_was_trained_on_is_not_trained_again(home, monkeypatch):
    monkeypatch.setenv("THUNDER_TRAINING_DEBOUNCE", "0")
    dataset(home, "full", CATEGORIES)
    deployed = deploy_tiny(home, "full")
    card = ModelCard.read(deployed.model_dir)
    version = latest_dataset(home.processed_dir("full")).version
    card.replace(dataset_version=version).write(deployed.model_dir)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["full"])
        result = evaluate(instance, home)
        assert result.run_requests == []
        assert json.loads(result.cursor) == {"full": version}


def test_a_prompt_becomes_a_reference_document_and_a_prioritised_pipeline_run(home):
    with dg.instance_for_test() as instance:
        result = prompt_training_job.execute_in_process(
            run_config={
                "ops": {
                    "prompt_document": {
                        "config": {
                            "agent_id": "bakery",
                            "prompt_text": "Bread wants a hot oven.",
                            "family": "gru",
                            "priority": "high",
                        }
                    }
                }
            },
            resources={"thunder": ThunderHome(root=str(home.root))},
            instance=instance,
        )
        assert result.success
        written = list(home.category_dir("bakery", "reference").glob("prompt_*.txt"))
        assert [path.read_text() for path in written] == ["Bread wants a hot oven."]
        assert instance.has_dynamic_partition("agents", "bakery")
        success = next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS")
        context = dg.build_run_status_sensor_context(
            sensor_name="prompt_followup_sensor",
            dagster_event=success,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
        )
        request = prompt_followup_sensor(context)
        assert request.partition_key == "bakery"
        assert request.tags["dagster/priority"] == "5"  # high
        assert request.run_config == {"ops": {"tpe_trials": {"config": {"families": ["gru"]}}}}
        # A run launched before the priorities had names gave a number: it still counts.
        assert run_priority(-3) == -3 and run_priority("low") == -5


def prompt_run(instance, home, **config):
    return prompt_training_job.execute_in_process(
        run_config={"ops": {"prompt_document": {"config": {"agent_id": "moods", **config}}}},
        resources={"thunder": ThunderHome(root=str(home.root))},
        instance=instance,
        raise_on_error=False,
    )


def test_a_classification_prompt_is_kept_as_labelled_examples_and_runs_the_classifier_pipeline(
    home,
):
    examples = "\n".join(
        json.dumps({"text": text, "label": label})
        for text, label in [("what a lovely day", "positive"), ("this is awful", "negative")]
    )
    with dg.instance_for_test() as instance:
        result = prompt_run(instance, home, prompt_text=examples, model_type="sentiment")
        assert result.success
        [written] = home.category_dir("moods", "reference").glob("prompt_*")
        assert written.suffix == ".jsonl" and written.read_text() == examples
        assert read_task(home.agent_dir("moods")) == "sentiment"
        success = next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS")
        request = prompt_followup_sensor(
            dg.build_run_status_sensor_context(
                sensor_name="prompt_followup_sensor",
                dagster_event=success,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(result.run_id),
            )
        )
        assert request.job_name == "classifier_pipeline_job" and request.run_config == {}

        # Text that holds no labelled example is refused by what is wrong with it, and not kept.
        refused = prompt_run(
            instance, home, prompt_text="text,label\n,positive\n", model_type="sentiment"
        )
        assert not refused.success
        [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "line 2: no text" in failure.event_specific_data.error.message
        assert len(list(home.category_dir("moods", "reference").glob("prompt_*"))) == 1
