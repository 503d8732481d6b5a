"""The hourly cleanup job on a home with released versions, serving pointers and leftovers."""

from datetime import timedelta

import dagster as dg
import pytest

from tests.factories import deploy_tiny, resources
from thunder_dagster.jobs.maintenance import cleanup_job

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def test_cleanup_prunes_old_versions_but_never_one_that_serves(home, store):
    for seed in range(5):
        deploy_tiny(home, "acme", seed=seed)
    deploy_tiny(home, "acme", seed=9, role="challenger")
    (home.models_dir("acme") / ".9.9.9.staging").mkdir()
    store.cache_response("acme", "1.0.0", "p", "r", 0.9, timedelta(seconds=-1))
    with dg.instance_for_test() as instance:
        result = cleanup_job.execute_in_process(
            instance=instance,
            resources=resources(home),
            run_config={
                "ops": {"clean_up": {"config": {"keep_versions": 1, "max_age_hours": 1e-9}}}
            },
        )
    summary = result.output_for_node("clean_up")
    kept = sorted(p.name for p in home.models_dir("acme").iterdir() if p.name[0].isdigit())
    # 1.5.0 is the challenger, 1.4.0 the champion, 1.3.0 what a rollback returns to.
    assert kept == ["1.3.0", "1.4.0", "1.5.0"]
    assert summary["removed_versions"] == ["acme 1.2.0", "acme 1.1.0", "acme 1.0.0"]
    assert summary["expired_cache_entries"] == 1 and summary["freed_bytes"] > 0
    assert not (home.models_dir("acme") / ".9.9.9.staging").exists()
    assert list((home.models_dir("acme") / "builds").iterdir()) == []


def test_stray_entries_under_models_are_left_alone_and_never_stop_the_cleanup(home):
    for seed in range(3):
        deploy_tiny(home, "acme", seed=seed)
    deploy_tiny(home, "zeta")
    models = home.root / "models"
    (models / "lost+found").mkdir()
    (models / "README").write_text("notes")
    (models / "ghost").mkdir()  # named like an agent, never deployed
    (home.deployments_dir("zeta") / "champion.json").write_text("{half a pointer")
    with dg.instance_for_test() as instance:
        result = cleanup_job.execute_in_process(
            instance=instance,
            resources=resources(home),
            run_config={"ops": {"clean_up": {"config": {"keep_versions": 1}}}},
        )
    summary = result.output_for_node("clean_up")
    assert result.success
    assert summary["removed_versions"] == ["acme 1.0.0"]
    (failure,) = summary["failed_agents"]
    assert failure.startswith("zeta: JSONDecodeError")
    assert (models / "lost+found").is_dir() and (models / "README").is_file()
    assert (home.models_dir("zeta") / "1.0.0").is_dir()  # its pointer is unreadable: kept
