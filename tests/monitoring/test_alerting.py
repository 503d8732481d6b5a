"""Alerts fire once per incident and resolve when it clears; notifications reach a real SMTP
server and a webhook receiver, both on loopback, and a failing channel is retried and recorded
while the others receive."""

from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller

from tests.factories import free_port, webhook_receiver
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.monitoring.alerting import run_tick
from thunder_dagster.monitoring.channels import ChannelError, deliver, parse_channels
from thunder_dagster.monitoring.incidents import AlertLog
from thunder_dagster.monitoring.rules import Observations, Thresholds

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on loopback; yields (port, received messages)."""
    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.content.decode("utf-8", "replace"))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, received
    controller.stop()


@pytest.fixture
def webhook():
    """An HTTP receiver on loopback; yields (port, received JSON bodies)."""
    server, received = webhook_receiver()
    yield server.server_port, received
    server.shutdown()


@pytest.fixture
def alerts(tmp_path):
    with QueryStore.open(f"sqlite:///{tmp_path / 'queries.db'}") as store:
        yield AlertLog(store.engine)


def mail_url(port: int) -> str:
    return f"mailto://alerts@127.0.0.1:{port}?mode=insecure&from=thunder@example.org&to=ops@example.org"


def test_an_incident_fires_once_resolves_once_and_each_change_is_delivered(alerts, smtp, webhook):
    smtp_port, mails = smtp
    hook_port, hooks = webhook
    channels = parse_channels(f"{mail_url(smtp_port)}, json://127.0.0.1:{hook_port}/alerts")
    backlog = Observations(NOW, embedding_backlog={"bakery": 250})
    first = run_tick(alerts, backlog, Thresholds(), channels)
    assert [(a.rule, a.subject) for a in first.changes.fired] == [("embedding_backlog", "bakery")]
    assert len(mails) == 1 and len(hooks) == 1
    assert "FIRING embedding_backlog (bakery)" in mails[0]
    assert "250 chunks of bakery" in hooks[0]["message"]
    # The same condition on the next ticks: nothing new is sent, the alert stays open.
    for minutes in (1, 2):
        later = Observations(NOW + timedelta(minutes=minutes), embedding_backlog={"bakery": 240})
        tick = run_tick(alerts, later, Thresholds(), channels)
        assert (tick.changes.fired, tick.changes.resolved, len(tick.changes.still_open)) == (
            [],
            [],
            1,
        )
    assert len(mails) == 1 and len(hooks) == 1
    cleared = run_tick(alerts, Observations(NOW + timedelta(minutes=3)), Thresholds(), channels)
    assert [a.rule for a in cleared.changes.resolved] == ["embedding_backlog"]
    assert len(mails) == 2 and "RESOLVED embedding_backlog (bakery)" in mails[1]
    assert len(hooks) == 2
    (alert,) = alerts.alerts()
    assert (alert.opened_at, alert.resolved_at) == (NOW, NOW + timedelta(minutes=3))
    assert "240 chunks" in alert.summary  # refreshed while open
    sent = alerts.deliveries(alert.id)
    assert [(d.event, d.delivered, d.attempts) for d in sent] == [
        ("fired", True, 1),
        ("fired", True, 1),
        ("resolved", True, 1),
        ("resolved", True, 1),
    ]
    # A new incident of the same rule is a new alert.
    again = run_tick(alerts, backlog, Thresholds(), [])
    assert len(again.changes.fired) == 1 and again.changes.fired[0].id != alert.id


def test_a_failing_channel_is_retried_with_backoff_and_recorded_while_the_other_receives(
    alerts, webhook
):
    hook_port, hooks = webhook
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    channels = parse_channels(f"{dead} json://127.0.0.1:{hook_port}/alerts")
    tick = run_tick(
        alerts,
        Observations(NOW, spool_rows=500),
        Thresholds(),
        channels,
        attempts=3,
        backoff_seconds=0.05,
    )
    assert len(hooks) == 1
    failed, delivered = tick.deliveries
    assert (failed.delivered, failed.attempts) == (False, 3)
    assert "127.0.0.1" in failed.channel and failed.error
    assert (delivered.delivered, delivered.attempts) == (True, 1)
    assert [d.delivered for d in alerts.deliveries(tick.changes.fired[0].id)] == [False, True]


def test_the_backoff_doubles():
    waits = []
    (channel,) = parse_channels(f"json://127.0.0.1:{free_port()}/nobody")
    (outcome,) = deliver([channel], "t", "b", attempts=4, backoff_seconds=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0] and outcome.attempts == 4 and not outcome.delivered


def test_a_url_apprise_cannot_use_is_named_without_its_secret():
    with pytest.raises(ChannelError, match=r"nosuchscheme://\.\.\. \(22 characters") as raised:
        parse_channels("nosuchscheme://user:hunter2@host/path")
    assert "hunter2" not in str(raised.value)
    # A form whose token sits where a host would: a Telegram bot's, broken by a typo.
    with pytest.raises(ChannelError) as raised:
        parse_channels("tgramm://123456789:AAHsecretTokenPart/12315544")
    assert "secretToken" not in str(raised.value) and "123456789" not in str(raised.value)


def test_a_channels_name_masks_its_tokens_as_apprise_renders_them_privately():
    for url, secret in (
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "TIiajkdnlazk"),
        ("tgram://123456789:AAHsecretTokenPart/12315544", "secretToken"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "JHMHI8qBe7bk"),
        ("mailto://user:hunter2@example.com", "hunter2"),
    ):
        (channel,) = parse_channels(url)
        assert secret not in channel.name, channel.name
