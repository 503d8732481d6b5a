"""alert_sensor on a real instance and THUNDER_HOME: a failed training run and an embedding
backlog fire once and reach the webhook, the operations asset reports each agent's last
successes, and the next tick sends nothing new."""

import dagster as dg
from click.testing import CliRunner

from tests.factories import webhook_receiver
from thunder_dagster.cli.main import main
from thunder_dagster.documents.datasets import write_training_dataset
from thunder_dagster.resources.alerting import AlertingResource
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.sensors.alerts import OPERATIONS, alert_sensor


@dg.op
def fails():
    raise RuntimeError("the training broke")


@dg.job(name="fine_tune_job")
def failing_fine_tune():
    fails()


def test_the_sensor_fires_once_reports_operations_and_thunder_alerts_lists_them(home):
    home.create_agent("bakery")
    rows = [
        ("d1", "reference", "a.txt", n, f"d1-{n}", n * 10, n * 10 + 9, f"chunk {n} text")
        for n in range(3)
    ]
    write_training_dataset("bakery", rows, home.processed_dir("bakery"))
    server, received = webhook_receiver()
    thunder = ThunderHome(root=str(home.root))
    resources = {
        "thunder": thunder,
        "queries": QueryLogStore(thunder=thunder),
        "alerting": AlertingResource(
            channels=f"json://127.0.0.1:{server.server_port}/alerts",
            thresholds={"embedding_backlog": 2},
        ),
    }
    try:
        with dg.instance_for_test() as instance:
            assert not failing_fine_tune.execute_in_process(
                instance=instance, raise_on_error=False
            ).success
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                result = alert_sensor(context)
                cursor = context.cursor
            assert "2 fired" in result.skip_reason.skip_message
            fired = {message["title"] for message in received}
            assert fired == {
                "[thunder-dagster] FIRING training_failure_rate (all)",
                "[thunder-dagster] FIRING embedding_backlog (bakery)",
            }
            report, *checks = result.asset_events
            assert report.asset_key == OPERATIONS
            verdicts = {check.check_name: check.passed for check in checks}
            # No cleanup yet, but the instance is minutes old; the one training run failed.
            assert verdicts == {"cleanup_recent": True, "training_runs_healthy": False}
            assert report.metadata["open_alert_count"].value == 2
            assert (
                "| bakery | never | never | never | never |"
                in report.metadata["last_successes"].value
            )
            with dg.build_sensor_context(
                instance=instance, resources=resources, cursor=cursor
            ) as context:
                again = alert_sensor(context)
            assert "0 fired, 0 resolved, 2 open" in again.skip_reason.skip_message
            assert again.asset_events == [] and len(received) == 2
    finally:
        server.shutdown()
    listed = CliRunner().invoke(main, ["alerts", "--open"])
    assert listed.exit_code == 0, listed.output
    assert "training_failure_rate" in listed.output and "embedding_backlog" in listed.output
    assert "1 of 1 training runs failed" in listed.output
