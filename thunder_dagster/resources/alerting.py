import dagster as dg
from pydantic import Field

from thunder_dagster import settings


class AlertingResource(dg.ConfigurableResource):
    """The alert rules' bounds and where alerts go."""

    channels: str = Field(
        default="",
        description="Apprise URLs, space- or comma-separated; empty means THUNDER_ALERT_URLS. "
        "With none, alerts are still recorded (`thunder alerts`, the sensor's ticks).",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Bounds to change, by name (monitoring.rules.Thresholds: "
        "training_failure_rate, cleanup_overdue_hours, embedding_backlog, latency_p95_ms, "
        "latency_window_minutes, min_free_disk_gb, spool_rows, drift_p95, ...); the rest keep "
        "the seeds' values",
    )
    attempts: int = Field(default=3, ge=1, le=10, description="Tries per delivery")
    backoff_seconds: float = Field(
        default=1.0, ge=0, description="Wait before the second try; it doubles after each"
    )

    def bounds(self):
        """The Thresholds, or a ValueError naming a bound that does not exist."""
        from dataclasses import fields

        from thunder_dagster.monitoring.rules import Thresholds

        known = {field.name for field in fields(Thresholds)}
        unknown = sorted(set(self.thresholds) - known)
        if unknown:
            raise ValueError(
                f"alerting.thresholds: no bound named {', '.join(unknown)}; the bounds are "
                f"{', '.join(sorted(known))}"
            )
        kinds = {field.name: field.type for field in fields(Thresholds)}
        return Thresholds(
            **{
                name: int(value) if kinds[name] in (int, "int") else float(value)
                for name, value in self.thresholds.items()
            }
        )

    def channel_list(self):
        """The channels, or a ChannelError naming the URL Apprise cannot use."""
        from thunder_dagster.monitoring.channels import parse_channels

        return parse_channels(self.channels or settings.ALERT_URLS.value())
