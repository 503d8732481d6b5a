import json
import shutil

from click.testing import CliRunner

from tests.factories import CORPUS, deploy_classifier, deploy_tiny, index_agent, thunder, write
from thunder_dagster.cli.main import main
from thunder_dagster.deployments.pointers import read_pointer, undeployment


def test_an_invalid_agent_id_is_refused_with_the_rule(home):
    result = CliRunner().invoke(main, ["ingest", "../etc"])
    assert result.exit_code == 2
    assert "invalid agent id '../etc'" in result.output
    assert "letters, digits" in result.output


def test_a_missing_agent_folder_says_where_to_put_files(home):
    result = CliRunner().invoke(main, ["ingest", "ghost"])
    assert result.exit_code == 1
    assert "no folder" in result.output and "work_product" in result.output


def test_ingest_runs_on_the_configured_instance_and_prints_the_summary(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "The oven is switched on forty minutes early. " * 30)
    write(agent / "reference" / "bad.docx", "not a zip")
    result = CliRunner().invoke(main, ["ingest", "acme"])
    assert result.exit_code == 0, result.output
    assert "agent acme: 2 files: 1 ok, 0 empty, 1 rejected, 0 skipped" in result.output
    assert "rejected reference/bad.docx" in " ".join(result.output.split())
    assert "ingest: run" in result.output and "succeeded" in result.output
    assert (home.root / "dagster" / "dagster.yaml").exists()
    manifest = json.loads((home.processed_dir("acme") / "dataset.json").read_text())
    assert manifest["rows"] == 3


def test_a_failed_run_exits_non_zero(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "blank.txt", "  ")
    result = CliRunner().invoke(main, ["ingest", "acme"])
    assert result.exit_code == 1
    assert "FAILED" in result.output


def test_demo_takes_the_sample_agent_to_a_deployed_model_that_writes(
    trained_sample, instruct_base, monkeypatch
):
    output, home = trained_sample.output, trained_sample.home
    assert "9 ok, 0 empty, 0 rejected, 0 skipped" in output
    assert "deployed sample 1.0.0" in output
    assert "sample after 'The bakery':" in output
    categories = {path.parent.name for path in home.agent_dir("sample").rglob("*.*")}
    assert {"work_product", "communication", "reference"} <= categories
    # What `make run` prints last: an answer from the sample's documents, with its source.
    for name in ("THUNDER_HOME", "DAGSTER_HOME"):
        monkeypatch.setenv(name, trained_sample.env[name])
    question = "Between which temperatures must the walk-in cooler stay?"
    asked = CliRunner().invoke(main, ["ask", "sample", question])
    assert asked.exit_code == 0, asked.output
    assert f"Q: {question}" in asked.output and "one and four" in asked.output
    assert "source: reference/food_safety.txt" in asked.output
    assert "between one and four degrees" in asked.output


def test_generate_without_a_deployment_says_how_to_get_one(home):
    result = CliRunner().invoke(main, ["generate", "acme", "Hello"])
    assert result.exit_code == 1
    assert "no champion deployment" in result.output and "thunder train AGENT_ID" in result.output


def test_classify_and_generate_each_answer_their_task_and_name_the_other(home):
    deploy_classifier(home, "reviews")
    deploy_tiny(home, "writer")
    labelled = CliRunner().invoke(main, ["classify", "reviews", "a lovely cake"])
    assert labelled.exit_code == 0, labelled.output
    assert labelled.output.splitlines()[0] in {"negative", "positive"}
    written = CliRunner().invoke(main, ["generate", "writer", "The ", "--tokens", "5"])
    assert written.exit_code == 0, written.output
    for command, agent, other in (
        ("generate", "reviews", "classify"),
        ("classify", "writer", "generate"),
    ):
        refused = CliRunner().invoke(main, [command, agent, "text"])
        assert refused.exit_code == 1
        assert f"`thunder {other}` answers it" in refused.output


def test_train_needs_the_agent_folder(home):
    result = CliRunner().invoke(main, ["train", "ghost", "--trials", "1"])
    assert result.exit_code == 1 and "no folder" in result.output


def test_rollback_goes_to_a_named_version_and_refuses_one_that_was_pruned(home):
    for seed in range(3):
        deploy_tiny(home, "acme", seed=seed)
    result = thunder("rollback", "acme", "--to", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert "acme: champion is now 1.0.0" in result.stdout
    assert read_pointer(home.deployments_dir("acme")).version == "1.0.0"
    deploy_tiny(home, "acme", seed=3)  # 1.3.0; the record now reads 1.0.0, 1.3.0
    shutil.rmtree(home.models_dir("acme") / "1.0.0")
    refused = thunder("rollback", "acme")
    assert refused.returncode == 1
    assert "acme 1.0.0: model.onnx is gone" in refused.stderr
    assert read_pointer(home.deployments_dir("acme")).version == "1.3.0"
    unknown = thunder("rollback", "acme", "--to", "1.2.0")
    assert unknown.returncode == 1
    assert "1.2.0 is not an earlier champion of acme: roll back to one of 1.0.0" in unknown.stderr


def test_an_operator_promotes_a_challenger_anyway_and_the_history_and_its_test_say_who(home, store):
    from thunder_dagster.deployments.pointers import history
    from thunder_dagster.feedback.experiments import AbTestStore

    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    test = AbTestStore(store.engine).create("acme", "1.0.0", "1.1.0", 0.2, "run abc")
    result = thunder("promote", "acme", "--reason", "the users asked for it")
    assert result.returncode == 0, result.stderr
    assert "acme: champion is now 1.1.0 (the users asked for it)" in result.stdout
    assert read_pointer(home.deployments_dir("acme")).version == "1.1.0"
    (event,) = [e for e in history(home.deployments_dir("acme")) if e["action"] == "promote"]
    assert event["by"].startswith("cli:") and event["reason"] == "the users asked for it"
    ended = AbTestStore(store.engine).get(test.id)
    assert ended.status == "promoted" and "anyway: the users asked for it" in ended.reason
    again = thunder("promote", "acme")
    assert again.returncode == 1 and "no challenger to promote" in again.stderr


def test_undeploy_and_redeploy_move_nothing_but_the_marker_and_say_why_they_refuse(home):
    deploy_tiny(home, "acme")
    deployments = home.deployments_dir("acme")
    result = thunder("undeploy", "acme", "--reason", "legal hold")
    assert result.returncode == 0, result.stderr
    assert "acme: undeployed (legal hold)" in result.stdout
    marker = undeployment(deployments)
    assert marker.reason == "legal hold" and marker.by.startswith("cli:")
    again = thunder("undeploy", "acme")
    assert again.returncode == 1 and "already undeployed" in again.stderr
    served = thunder("redeploy", "acme")
    assert served.returncode == 0, served.stderr
    assert "acme: served again, champion 1.0.0" in served.stdout
    assert undeployment(deployments) is None and read_pointer(deployments).version == "1.0.0"


def test_search_prints_the_nearest_chunks_and_says_when_there_is_no_index(home):
    text = (CORPUS / "text" / "tinyshakespeare.txt").read_text()[:5000]
    missing = CliRunner().invoke(main, ["search", "bard", "citizens"])
    assert missing.exit_code == 1 and "no retrieval index yet" in missing.output
    index_agent(home, "bard", {"play.txt": text})
    found = CliRunner().invoke(
        main, ["search", "bard", "we are accounted poor citizens", "-k", "2"]
    )
    assert found.exit_code == 0, found.output
    lines = found.output.splitlines()
    assert lines[0].startswith("1. reference/play.txt [") and lines[2].startswith("2. ")
    assert "accounted poor" in " ".join(found.output.split())
