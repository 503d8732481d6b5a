"""The champion gate: a retrained model is scored beside the serving champion on the same test
split, and goes live only when it is no worse; a worse one becomes a challenger under an A/B
test, or is refused, as the agent says."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.factories import CONTEXT, VOCAB, deploy_tiny, materialize_given
from thunder_dagster.assets.deployments import deployment
from thunder_dagster.deployments.gate import ReleasePolicy, judge, text_loss
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.documents.datasets import write_training_dataset
from thunder_dagster.feedback.experiments import AbTestStore
from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.models import TrainedModel
from thunder_dagster.modeling.reports import Check, ExportReport, Parity
from thunder_dagster.modeling.text import dataset_documents, split_documents
from thunder_dagster.tasks.agents import AgentSettingsError, read_release_policy, settings_path

TEXT = "the baker bakes the bread at dawn and the oven is hot. " * 40


def test_the_verdicts_first_better_within_the_tolerance_worse_and_refused():
    policy = ReleasePolicy(tolerance=0.05)
    assert judge(2.0, None, None, policy).role == "champion"  # the first model
    assert judge(1.9, "1.0.0", 2.0, policy).role == "champion"
    assert judge(2.04, "1.0.0", 2.0, policy).role == "champion"  # within 0.05
    worse = judge(2.1, "1.0.0", 2.0, policy)
    assert worse.role == "challenger" and "worse by more than the tolerance" in worse.reason
    refused = judge(2.1, "1.0.0", 2.0, replace(policy, when_worse="refuse"))
    assert refused.role is None and not refused.released
    assert "2.1000 against champion 1.0.0's 2.0000" in refused.reason
    assert judge(float("nan"), "1.0.0", 2.0, policy).role == "challenger"


def test_the_release_policy_comes_from_agent_json_and_a_bad_one_is_named(home):
    agent = home.create_agent("acme")
    assert read_release_policy(agent) == ReleasePolicy()
    settings_path(agent).write_text(json.dumps({"release": {"when_worse": "refuse"}}))
    assert read_release_policy(agent).when_worse == "refuse"
    settings_path(agent).write_text(json.dumps({"release": {"when_worse": "ship"}}))
    with pytest.raises(AgentSettingsError, match="when_worse is challenger or refuse"):
        read_release_policy(agent)


def candidate(home, seed: int) -> tuple[ExportReport, TrainedModel]:
    """A tiny untrained build of the agent, as onnx_model and keras_model hand it over."""
    released = deploy_tiny(home, "gate-builds", seed=seed)
    build = Path(released.model_dir)
    checks = [Check(name, True, "", {}) for name in ("parity", "finite", "baseline", "step")]
    report = ExportReport(
        str(build / "model.onnx"),
        sha256_of(build / "model.onnx"),
        "gru",
        Parity(0.0, 1.0, True, (1, CONTEXT, len(VOCAB))),
        2.0,
        3.0,
        {},
        checks,
        str(build / "step.onnx"),
        sha256_of(build / "step.onnx"),
    )
    trained = TrainedModel(
        "acme", str(build), "gru", {}, CONTEXT, list(VOCAB), [], 2.0, 3.0, "v1", None, 1.0, None
    )
    return report, trained


def deploy(home, report, trained, dataset):
    values = {"onnx_model": report, "keras_model": trained, "training_dataset": dataset}
    return materialize_given(home, deployment, "acme", values)


def test_a_worse_retrain_becomes_a_challenger_under_test_or_is_refused_and_a_better_one_ships(
    home, store
):
    rows = [("doc-a", "reference", "a.txt", 0, f"doc-a-{i}", 0, 40, TEXT) for i in range(12)]
    dataset = write_training_dataset("acme", rows, home.processed_dir("acme"))
    test_text = split_documents(dataset_documents(dataset.path), 0.1).test
    builds = [candidate(home, seed) for seed in (0, 1)]
    losses = [
        text_loss(Path(trained.model_dir), Path(report.onnx_path).read_bytes(), test_text)
        for report, trained in builds
    ]
    assert losses[0] != losses[1]
    better, worse = sorted(range(2), key=losses.__getitem__)
    # The first model of the agent has nothing to beat.
    first = deploy(home, *builds[better], dataset)
    assert first.success
    assert read_pointer(home.deployments_dir("acme")).version == "1.0.0"
    champion = read_pointer(home.deployments_dir("acme"))
    # A worse one, past a tolerance of 0: a challenger, under an A/B test of its own.
    settings_path(home.agent_dir("acme")).write_text(json.dumps({"release": {"tolerance": 0}}))
    second = deploy(home, *builds[worse], dataset)
    assert second.success
    (shown,) = second.asset_materializations_for_node("deployment")
    metadata = {key: value.value for key, value in shown.metadata.items()}
    assert metadata["role"] == "challenger" and metadata["gate"] == "challenger"
    assert metadata["candidate_test_loss"] == pytest.approx(losses[worse])
    assert metadata["champion_test_loss"] == pytest.approx(losses[better])
    assert metadata["champion_version"] == champion.version
    assert read_pointer(home.deployments_dir("acme")).version == champion.version
    challenger = read_pointer(home.deployments_dir("acme"), "challenger")
    test = AbTestStore(store.engine).running("acme")
    assert test.challenger_version == challenger.version and metadata["ab_test"] == test.id
    # Refused when the agent says so: nothing moves, and the failure names both scores.
    settings_path(home.agent_dir("acme")).write_text(
        json.dumps({"release": {"tolerance": 0, "when_worse": "refuse"}})
    )
    refused = deploy(home, *builds[worse], dataset)
    assert not refused.success
    (failure,) = [event for event in refused.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert f"{losses[worse]:.4f} against champion {champion.version}'s" in message
    assert "refused" in message
    assert read_pointer(home.deployments_dir("acme"), "challenger") == challenger
    # Worse only within the tolerance: it ships as champion.
    gap = losses[worse] - losses[better] + 0.01
    settings_path(home.agent_dir("acme")).write_text(json.dumps({"release": {"tolerance": gap}}))
    shipped = deploy(home, *builds[worse], dataset)
    assert shipped.success
    assert read_pointer(home.deployments_dir("acme")).version != champion.version


def test_low_quality_compares_the_pair_on_the_same_text_and_nothing_else(home):
    from thunder_dagster.deployments.gate import SCORES_NAME, score_pair
    from thunder_dagster.monitoring.observe import agent_versions

    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    # Each card's own loss is on a text of its own: without scores of the pair, no comparison.
    unscored = agent_versions(home, "acme")
    assert (unscored.champion, unscored.challenger) == ("1.0.0", "1.1.0")
    assert unscored.champion_score is None and unscored.challenger_score is None
    scores = score_pair(home.deployments_dir("acme"), "v1", TEXT)
    versions = agent_versions(home, "acme")
    assert (versions.champion_score, versions.challenger_score) == (
        scores.champion_score,
        scores.challenger_score,
    )
    assert scores.champion_score != scores.challenger_score
    # Scores written before the pair had a measure read as test losses.
    legacy = {"champion": "1.0.0", "challenger": "1.1.0", "dataset_version": "v1"}
    legacy |= {"champion_loss": 2.5, "challenger_loss": 2.75}
    (home.deployments_dir("acme") / SCORES_NAME).write_text(json.dumps(legacy))
    old = agent_versions(home, "acme")
    assert (old.champion_score, old.challenger_score, old.measure) == (2.5, 2.75, "test loss")
    assert old.challenger_worse
    # A new challenger since: the old pair's scores are not its.
    deploy_tiny(home, "acme", seed=2, role="challenger")
    assert agent_versions(home, "acme").challenger_score is None
