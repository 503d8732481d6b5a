"""The classification task through the graph, on the real sentence encoder: labelled uploads
(bad rows reported by their line, the rest kept) to labelled_examples, a searched classifier
held to its three blocking checks and deployed, the server's classify with the 409 between the
tasks, and the sensors that train a classifier agent's examples and leave it to no generator."""

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny, materialize_given, resources, topic_examples
from thunder_dagster.assets.classification import (
    classifier_deployment,
    labelled_examples,
    text_classifier,
)
from thunder_dagster.assets.datasets import training_dataset
from thunder_dagster.assets.documents import chunks, documents
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.documents.labelled import collect_examples, latest_labelled, write_labelled
from thunder_dagster.files import sha256_of
from thunder_dagster.home import Home
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings
from thunder_dagster.tasks.agents import settings_path, write_task

AGENT = "topics"
ASSETS = [
    documents,
    chunks,
    training_dataset,
    labelled_examples,
    text_classifier,
    classifier_deployment,
]
CLASSIFIER = {"ops": {"text_classifier": {"config": {"trials": 2, "epochs": 40, "minutes": 2}}}}


def uploads(agent_dir) -> int:
    """A CSV with every topic example and a row without a label (line 5), a JSONL with a
    line that is not JSON (line 2) and a text labelled again with another topic, and a text
    document in each category. Returns how many distinct texts are labelled."""
    texts, labels = topic_examples(8)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["id", "Text", "label"])
    rows = [[n, text, label] for n, (text, label) in enumerate(zip(texts, labels, strict=True))]
    rows.insert(3, [99, "a row its writer forgot to label", ""])  # file line 5
    writer.writerows(rows)
    (agent_dir / "reference" / "examples.csv").write_text(buffer.getvalue())
    lines = [
        json.dumps({"text": "the oven was hot at noon", "label": "baking"}),
        "{not json",
        json.dumps({"text": texts[0], "label": "sailing"}),  # the CSV says baking
        json.dumps({"text": "the choir sang all night", "label": "music"}),
    ]
    (agent_dir / "communication" / "more.jsonl").write_text("\n".join(lines) + "\n")
    for category in ("work_product", "communication", "reference"):
        (agent_dir / category / "notes.txt").write_text(f"Notes on the topics, {category}.\n")
    return len(texts) + 2


@pytest.fixture(scope="module")
def classified(tmp_path_factory):
    """One classification agent ingested, trained and deployed for the module's tests."""
    home = Home.resolve(tmp_path_factory.mktemp("classified") / "thunder")
    agent_dir = home.create_agent(AGENT)
    write_task(agent_dir, "classification")
    distinct = uploads(agent_dir)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [AGENT])
        result = dg.materialize(
            ASSETS,
            partition_key=AGENT,
            instance=instance,
            resources=resources(home),
            run_config=CLASSIFIER,
            raise_on_error=False,
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return home, result, distinct


def metadata(result, asset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in materialization.metadata.items()}


def test_labelled_uploads_are_read_by_row_and_a_bad_row_is_named_by_its_line(classified):
    home, result, distinct = classified
    report = json.loads(home.ingest_report_path(AGENT).read_text())
    entries = {entry["path"]: entry for entry in report["files"]}
    assert report["summary"] == {"ok": 3, "labelled": 2, "empty": 0, "rejected": 0, "skipped": 0}
    csv_entry = entries["reference/examples.csv"]
    assert csv_entry["status"] == "labelled" and csv_entry["examples"] == distinct - 2
    assert csv_entry["bad_rows"] == [{"line": 5, "reason": "no label: give the example's label"}]
    jsonl = entries["communication/more.jsonl"]
    assert jsonl["examples"] == 3 and [row["line"] for row in jsonl["bad_rows"]] == [2]
    assert entries["work_product/notes.txt"]["chunks"] == 1  # the labelled files are not chunked
    examples = metadata(result, "labelled_examples")
    assert examples["dagster/row_count"] == distinct
    assert examples["rows_left_out"] == 2 and examples["conflicting_labels"] == 1
    # Files are read in the agent's order (work_product, communication, reference): the JSONL's
    # "sailing" for texts[0] came first, so the CSV's "baking" for it is the conflict.
    assert examples["labels"] == {"baking": 24, "music": 25, "sailing": 25}
    manifest = latest_labelled(home.processed_dir(AGENT))
    assert manifest["rows"] == distinct and manifest["version"] == examples["version"]


def test_the_classifier_passes_its_three_checks_and_its_card_holds_the_measures(classified):
    home, result, _ = classified
    checks = {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("text_classifier")
    }
    assert sorted(checks) == ["better_than_majority", "finite_outputs", "parity"]
    assert all(evaluation.passed for evaluation in checks.values())
    trained = metadata(result, "text_classifier")
    assert trained["accuracy"] >= 0.9 and trained["macro_f1"] >= 0.9
    assert trained["majority_accuracy"] < 0.4 and trained["labels"] == 3
    assert (
        "confusion matrix" in trained["confusion_matrix"] and "| baking |" in trained["per_label"]
    )
    deployment = read_pointer(home.deployments_dir(AGENT))
    assert deployment.version == metadata(result, "classifier_deployment")["version"] == "1.0.0"
    card = ModelCard.read(deployment.model_dir)
    assert card.task == "classification" and card.labels == ("baking", "music", "sailing")
    assert card.classification.accuracy == pytest.approx(trained["accuracy"])
    # The linear model over the examples' words is part of it, with the weight it was given.
    assert card.classification.lexical_features == trained["lexical_features"] > 0
    assert trained["mix"]["words_weight"] == card.classification.words_weight
    assert card.dataset_version == latest_labelled(home.processed_dir(AGENT))["version"]
    assert {"model.onnx", "tokenizer.json", "model.keras"} <= set(card.files)


def test_the_server_classifies_and_each_task_refuses_the_other_with_409(classified):
    home, _, _ = classified
    deploy_tiny(home, "writer")
    settings = ServerSettings(
        deployments_root=home.root / "deployments", query_db_url=home.queries_db_url
    )
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            f"/v1/agents/{AGENT}/classify", json={"text": "the cake is in the oven"}
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["label"] == "baking" and body["task"] == "classification"
        assert sorted(body["probabilities"]) == ["baking", "music", "sailing"]
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert body["probabilities"]["baking"] == max(body["probabilities"].values())
        sailing = client.post(f"/v1/agents/{AGENT}/classify", json={"text": "a ship at sea"})
        assert sailing.json()["label"] == "sailing"
        generate = client.post(
            f"/v1/agents/{AGENT}/generate", json={"prompt": "bread", "user_id": "u1"}
        )
        assert generate.status_code == 409
        assert "classification agent" in generate.json()["detail"]
        assert f"/v1/agents/{AGENT}/classify" in generate.json()["detail"]
        refused = client.post("/v1/agents/writer/classify", json={"text": "bread"})
        assert refused.status_code == 409 and "generation agent" in refused.json()["detail"]
        blank = client.post(f"/v1/agents/{AGENT}/classify", json={"text": "  "})
        assert blank.status_code == 422 and "text" in blank.text
        assert client.get("/healthz").json()["agents"][AGENT]["champion"] == "1.0.0"


def test_the_classifier_sensor_trains_new_examples_and_the_generator_sensor_leaves_them(
    classified, monkeypatch
):
    from thunder_dagster.resources.home import ThunderHome
    from thunder_dagster.sensors.training import classifier_sensor, training_sensor

    home, _, _ = classified
    thunder = ThunderHome(root=str(home.root))
    monkeypatch.setenv("THUNDER_TRAINING_DEBOUNCE", "0")

    def evaluate(sensor, instance, cursor=None):
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"thunder": thunder}
        )
        return sensor(context)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [AGENT])
        served = evaluate(classifier_sensor, instance)
        assert served.run_requests == []  # the champion was trained on these very examples
        texts, labels = topic_examples(9)
        changed = write_labelled(
            home.processed_dir(AGENT),
            collect_examples(AGENT, [("new.csv", _examples(texts, labels))]),
            "2026-12-02T00:00:00+00:00",
        )
        asked = evaluate(classifier_sensor, instance)
        [request] = asked.run_requests
        assert request.partition_key == AGENT
        assert request.tags["thunder/labelled_version"] == changed.version
        assert evaluate(classifier_sensor, instance, asked.cursor).run_requests == []
        # The agent has a dataset of chunks in every category, which a generation agent's
        # sensor would train; a classification agent's it leaves alone.
        assert evaluate(training_sensor, instance).run_requests == []
        write_task(home.agent_dir(AGENT), "generation")
        try:
            [generation] = evaluate(training_sensor, instance).run_requests
            assert generation.partition_key == AGENT
            assert evaluate(classifier_sensor, instance).run_requests == []
        finally:
            write_task(home.agent_dir(AGENT), "classification")


def _examples(texts, labels):
    from thunder_dagster.documents.labelled import LabelledExample

    return [
        LabelledExample(text, label, line)
        for line, (text, label) in enumerate(zip(texts, labels, strict=True), start=2)
    ]


def _damaged(build: Path, into: Path, labels: int) -> tuple[Path, str]:
    """A copy of a classifier build whose weights into the labels are noise: it still loads
    and answers, and is worse."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    shutil.copytree(build, into)
    proto = onnx.load(str(into / "model.onnx"))
    rng = np.random.default_rng(0)
    for tensor in proto.graph.initializer:
        if tensor.dims and tensor.dims[-1] == labels and len(tensor.dims) == 2:
            weights = numpy_helper.to_array(tensor)
            noise = rng.normal(0, 5, weights.shape).astype(weights.dtype)
            tensor.CopyFrom(numpy_helper.from_array(noise, tensor.name))
    onnx.save(proto, str(into / "model.onnx"))
    return into / "model.onnx", sha256_of(into / "model.onnx")


def test_a_worse_classifier_is_refused_with_both_scores_and_a_no_worse_one_ships(
    classified, tmp_path
):
    home, result, _ = classified
    copy = Home.resolve(tmp_path / "thunder")
    shutil.copytree(home.root, copy.root)  # the module's agent stays as the other tests see it
    settings_path(copy.agent_dir(AGENT)).write_text(
        json.dumps({"task": "classification", "release": {"when_worse": "refuse"}})
    )
    trained = result.output_for_node("text_classifier")
    assert trained.test_texts and len(trained.test_texts) == len(trained.test_labels)
    worse = _worse(trained, tmp_path)
    refused = materialize_given(copy, classifier_deployment, AGENT, {"text_classifier": worse})
    assert not refused.success
    [failure] = [event for event in refused.all_events if event.is_step_failure]
    reason = failure.step_failure_data.user_failure_data.description
    assert "macro F1" in reason and "against champion 1.0.0's" in reason and "refused" in reason
    assert read_pointer(copy.deployments_dir(AGENT)).version == "1.0.0"
    assert read_pointer(copy.deployments_dir(AGENT), "challenger") is None
    # The same classifier again is no worse than itself: released, both scores on its page.
    shipped = materialize_given(copy, classifier_deployment, AGENT, {"text_classifier": trained})
    assert shipped.success
    page = metadata(shipped, "classifier_deployment")
    assert page["version"] == "1.1.0" and page["gate"] == "champion"
    assert page["candidate_macro_f1"] == page["champion_macro_f1"] >= 0.9
    assert page["candidate_accuracy"] == page["champion_accuracy"]


def _worse(trained, tmp_path):
    onnx_path, sha256 = _damaged(Path(trained.model_dir), tmp_path / "damaged", 3)
    return replace(
        trained, model_dir=str(onnx_path.parent), onnx_path=str(onnx_path), onnx_sha256=sha256
    )


def test_a_worse_classifier_is_a_challenger_whose_ab_test_judges_accuracy_on_users_labels(
    classified, tmp_path
):
    """By default a worse classifier serves the A/B share under a test of its own; users who
    send the correct label (and a neutral score of 3, which no positive rate would count)
    make its accuracy and the champion's, and the evaluation retires it on them."""
    from tests.factories import topic_examples
    from thunder_dagster.assets.abtests import ab_test_result
    from thunder_dagster.feedback.experiments import AbTestStore
    from thunder_dagster.feedback.store import QueryStore
    from thunder_dagster.monitoring.observe import observe_files
    from thunder_dagster.monitoring.rules import Observations, Thresholds, low_quality
    from thunder_dagster.times import utc_now

    home, result, _ = classified
    copy = Home.resolve(tmp_path / "thunder")
    shutil.copytree(home.root, copy.root)
    worse = _worse(result.output_for_node("text_classifier"), tmp_path)
    released = materialize_given(copy, classifier_deployment, AGENT, {"text_classifier": worse})
    assert released.success
    page = metadata(released, "classifier_deployment")
    assert page["gate"] == page["role"] == "challenger" and page["version"] == "1.1.0"
    assert page["candidate_macro_f1"] < page["champion_macro_f1"]
    assert read_pointer(copy.deployments_dir(AGENT)).version == "1.0.0"
    with QueryStore.open(copy.queries_db_url) as store:
        test = AbTestStore(store.engine).running(AGENT)
    assert test.id == page["ab_test"] and test.challenger_version == "1.1.0"
    # The low_quality alert sees the worse classifier on the gate's measure.
    seen = Observations(utc_now(), versions=observe_files(copy).versions)
    [alert] = low_quality(seen, Thresholds())
    assert alert.subject == AGENT and "has macro F1" in alert.summary

    texts, labels = topic_examples(2)
    settings = ServerSettings(
        deployments_root=copy.root / "deployments", query_db_url=copy.queries_db_url
    )
    arms: dict[str, list[bool]] = {"champion": [], "challenger": []}
    with TestClient(create_app(settings)) as client:
        for n in range(80):
            text, label = texts[n % len(texts)], labels[n % len(texts)]
            answer = client.post(
                f"/v1/agents/{AGENT}/classify", json={"text": text, "user_id": f"user-{n}"}
            ).json()
            assert (
                answer["model_version"]
                == {"champion": "1.0.0", "challenger": "1.1.0"}[answer["variant"]]
            )
            arms[answer["variant"]].append(answer["label"] == label)
            rated = client.post(
                "/v1/feedback", json={"query_id": answer["query_id"], "score": 3, "label": label}
            )
            assert rated.status_code == 200
        live = client.get(f"/v1/admin/ab-tests/{test.id}").json()
    assert len(arms["challenger"]) >= 6 and len(arms["champion"]) >= 40
    accuracy = {arm: sum(right) / len(right) for arm, right in arms.items()}
    assert accuracy["champion"] >= 0.9 > accuracy["challenger"]
    assert live["measure"] == "accuracy"
    assert live["champion"]["positive_rate"] == pytest.approx(accuracy["champion"])

    judged = materialize_given(
        copy,
        ab_test_result,
        AGENT,
        {},
        {"ops": {"ab_test_result": {"config": {"min_sample": 5}}}},
    )
    outcome = judged.output_for_node("ab_test_result")
    assert outcome.measure == "accuracy" and outcome.decision == "retire"
    assert outcome.champion.positive_rate == pytest.approx(accuracy["champion"])
    assert outcome.challenger.positive_rate == pytest.approx(accuracy["challenger"])
    assert "accuracy" in outcome.reason
    assert read_pointer(copy.deployments_dir(AGENT), "challenger") is None
    with QueryStore.open(copy.queries_db_url) as store:
        assert AbTestStore(store.engine).get(test.id).status == "retired"


def test_a_users_corrected_label_becomes_a_labelled_example_traced_to_its_answer(
    classified, tmp_path, monkeypatch
):
    from thunder_dagster.resources.home import ThunderHome
    from thunder_dagster.sensors.training import classifier_sensor

    home, result, distinct = classified
    copy = Home.resolve(tmp_path / "thunder")
    shutil.copytree(home.root, copy.root)
    deploy_tiny(copy, "writer")
    settings = ServerSettings(
        deployments_root=copy.root / "deployments", query_db_url=copy.queries_db_url
    )
    text = "the drummer set up by the ship's mast"
    with TestClient(create_app(settings)) as client:
        answer = client.post(f"/v1/agents/{AGENT}/classify", json={"text": text, "user_id": "ann"})
        query_id = answer.json()["query_id"]
        unknown = client.post(
            "/v1/feedback", json={"query_id": query_id, "score": 1, "label": "cooking"}
        )
        assert unknown.status_code == 422 and "'cooking' is not one of" in unknown.text
        assert "baking, music, sailing" in unknown.text and '"label"' in unknown.text
        written = client.post(
            "/v1/agents/writer/generate", json={"prompt": "bread", "user_id": "ann"}
        ).json()
        wrong = client.post(
            "/v1/feedback", json={"query_id": written["query_id"], "score": 1, "label": "music"}
        )
        assert wrong.status_code == 422 and "a label corrects a classify answer" in wrong.text
        corrected = client.post(
            "/v1/feedback", json={"query_id": query_id, "score": 1, "label": "music"}
        )
        assert corrected.status_code == 200 and corrected.json()["stored"] is True
    documents = result.output_for_node("documents")
    relabelled = materialize_given(copy, labelled_examples, AGENT, {"documents": documents})
    page = metadata(relabelled, "labelled_examples")
    assert page["from_feedback"] == page["user_labels"] == 1
    assert page["dagster/row_count"] == distinct + 1
    with open(latest_labelled(copy.processed_dir(AGENT))["path"], newline="") as rows:
        by_text = {row["text"]: row for row in csv.DictReader(rows)}
    assert by_text[text]["label"] == "music" and by_text[text]["source"] == f"query:{query_id}"
    # A new version of the examples: the sensor asks for a classifier, through the gate.
    monkeypatch.setenv("THUNDER_TRAINING_DEBOUNCE", "0")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [AGENT])
        context = dg.build_sensor_context(
            instance=instance, resources={"thunder": ThunderHome(root=str(copy.root))}
        )
        [request] = classifier_sensor(context).run_requests
    assert request.tags["thunder/labelled_version"] == page["version"]


def test_labelled_examples_fail_clearly_and_write_nothing_while_the_store_is_down(
    classified, tmp_path, monkeypatch
):
    home, result, _ = classified
    copy = Home.resolve(tmp_path / "thunder")
    shutil.copytree(home.root, copy.root)
    before = latest_labelled(copy.processed_dir(AGENT))
    # Nothing listens on port 9: the store is down.
    monkeypatch.setenv("THUNDER_QUERY_DB_URL", "postgresql+psycopg2://thunder:secret@127.0.0.1:9/q")
    documents = result.output_for_node("documents")
    failed = materialize_given(copy, labelled_examples, AGENT, {"documents": documents})
    assert not failed.success
    kinds = [event.event_type_value for event in failed.all_events]
    # Each attempt's failure is logged as it is retried; the last ends the step.
    (retried, *_) = [e for e in failed.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    error, reason = retried.event_specific_data.error, ""
    while error is not None:  # the policy's retry request, caused by the step's Failure
        reason, error = reason + error.message, error.cause
    assert "users' labels could not be read from the query-log store" in reason
    assert "127.0.0.1:9" in reason and "secret" not in reason and "***" in reason
    assert "materialize labelled_examples again" in reason
    assert kinds.count("STEP_UP_FOR_RETRY") == 2
    assert latest_labelled(copy.processed_dir(AGENT)) == before


def test_two_classifier_versions_are_compared_on_the_labelled_test_split_in_the_ui(
    classified, tmp_path
):
    from thunder_dagster.assets.comparisons import model_comparison
    from thunder_dagster.deployments.catalog import agent_versions

    home, result, _ = classified
    copy = Home.resolve(tmp_path / "thunder")
    shutil.copytree(home.root, copy.root)
    trained = result.output_for_node("text_classifier")
    assert materialize_given(copy, classifier_deployment, AGENT, {"text_classifier": trained})
    versions = agent_versions(copy.models_dir(AGENT), copy.deployments_dir(AGENT))
    assert [v.version for v in versions] == ["1.1.0", "1.0.0"]
    assert versions[0].accuracy == versions[1].accuracy >= 0.9 and versions[0].macro_f1 >= 0.9
    config = {"version_a": "1.0.0", "version_b": "1.1.0"}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [AGENT])
        compared = dg.materialize(
            [model_comparison],
            partition_key=AGENT,
            instance=instance,
            resources=resources(copy),
            run_config={"ops": {"model_comparison": {"config": config}}},
        )
    page = metadata(compared, "model_comparison")
    # One model released twice: the same answers, so the same measures, on the same texts.
    assert page["accuracy_a"] == page["accuracy_b"] >= 0.9
    assert page["macro_f1_a"] == page["macro_f1_b"]
    assert page["labelled_version"] == latest_labelled(copy.processed_dir(AGENT))["version"]
    assert "| 1.0.0: baking |" in page["confusion_matrices"]
    assert "| 1.1.0: sailing |" in page["confusion_matrices"]
    assert "| macro F1 |" in page["side_by_side"]


def test_a_classifiers_queries_off_its_topics_drift_further_than_queries_on_them(
    classified, tmp_path
):
    from datetime import UTC, datetime, timedelta

    from tests.factories import log
    from thunder_dagster.assets.feedback import query_drift
    from thunder_dagster.feedback.store import QueryStore

    home, _, _ = classified
    copy = Home.resolve(tmp_path / "thunder")
    shutil.copytree(home.root, copy.root)
    texts, _ = topic_examples(9)
    on_topic = [text.replace("day", "evening") for text in texts[8::9]]
    off_topic = [
        "the court adjourned the appeal until the tax ruling",
        "quarterly revenue fell short of the analysts' forecast",
        "the patient's blood pressure was measured twice",
        "install the driver before plugging in the printer",
        "the treaty was ratified by parliament in spring",
        "interest rates on mortgages rose again this month",
    ]
    noon = datetime(2026, 3, 3, 12, tzinfo=UTC)
    store = QueryStore.open(copy.queries_db_url)
    for number, text in enumerate(on_topic):
        log(store, 1, noon + timedelta(minutes=number), agent=AGENT, prompt=text)
    for number, text in enumerate(off_topic):
        log(store, 1, noon + timedelta(days=1, minutes=number), agent=AGENT, prompt=text)
    scores = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [AGENT])
        for day in ("2026-03-03", "2026-03-04"):
            result = dg.materialize(
                [query_drift],
                partition_key=dg.MultiPartitionKey({"agent": AGENT, "day": day}),
                instance=instance,
                resources=resources(copy),
            )
            page = metadata(result, "query_drift")
            assert page["scored"] is True and page["model_version"] == "1.0.0"
            scores[day] = page
    near, far = scores["2026-03-03"], scores["2026-03-04"]
    assert near["distance_p95"] < far["distance_p95"]
    assert near["drift_p95"] < far["drift_p95"]
    assert [row.day.isoformat() for row in store.drift_history(AGENT)] == list(scores)
    store.close()
