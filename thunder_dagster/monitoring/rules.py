"""The alert rules of seeds 004, 003 and 001, as functions of what was observed.

Each rule looks at an `Observations` and returns the conditions that hold now, one per subject
(an agent, or "all"); `incidents.py` turns a condition that starts holding into one alert and
its end into a resolution. No rule reads a file or a database: what they judge is gathered
first (`observe.py`, and the Dagster sensor for what only the instance knows), so each rule is
tested on an Observations built by hand.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

ALL = "all"


@dataclass(frozen=True)
class Thresholds:
    """Every bound the rules apply, with the seeds' values as defaults."""

    # seed 004
    training_failure_rate: float = 0.1
    training_window_hours: float = 24.0
    cleanup_overdue_hours: float = 2.0
    embedding_backlog: int = 100
    # seed 003
    latency_p95_ms: float = 1000.0
    latency_window_minutes: float = 5.0
    latency_min_queries: int = 5
    min_free_disk_gb: float = 1.0
    spool_rows: int = 100
    event_hours: float = 24.0  # how long a retirement or a significant A/B test stays open
    # seed 001 (it names a p95 drift score, not its bound): in standard deviations of the
    # agent's own held-out text (monitoring/drift.py). Queries distributed like that text have
    # a p95 near 1.6; against the bakery sample agent (tests/monitoring/test_drift.py) its own
    # held-out sentences score 1.2 and tinyshakespeare's lines 2.3.
    drift_p95: float = 2.0


@dataclass(frozen=True)
class Finished:
    """A run of a watched job that ended: its job, whether it succeeded, when it ended."""

    job: str
    succeeded: bool
    ended_at: datetime


@dataclass(frozen=True)
class AbEvent:
    """A challenger's end, from the agent's deployment history: "promote" (its A/B test found
    it better) or "retire"."""

    agent_id: str
    challenger: str
    decision: str
    at: datetime


@dataclass(frozen=True)
class Versions:
    """An agent's champion and challenger with their scores on the same held-out data (None:
    no such role, or not scored together): test losses, or a classifier's macro F1."""

    champion: str | None
    champion_score: float | None
    challenger: str | None
    challenger_score: float | None
    measure: str = "test loss"
    higher_is_better: bool = False

    @property
    def challenger_worse(self) -> bool:
        if self.challenger_score is None or self.champion_score is None:
            return False
        if self.higher_is_better:
            return self.challenger_score < self.champion_score
        return self.challenger_score > self.champion_score


@dataclass(frozen=True)
class Observations:
    now: datetime
    training_runs: list[Finished] = field(default_factory=list)  # within the window
    last_cleanup: datetime | None = None  # the last successful cleanup's end
    in_use_since: datetime | None = None  # the oldest run the instance knows
    embedding_backlog: dict[str, int] = field(default_factory=dict)
    latency_p95_ms: dict[str, tuple[float, int]] = field(default_factory=dict)  # p95, queries
    versions: dict[str, Versions] = field(default_factory=dict)
    ab_events: list[AbEvent] = field(default_factory=list)
    free_disk_bytes: int | None = None
    spool_rows: int = 0
    drift: dict[str, tuple[str, float]] = field(default_factory=dict)  # day, p95 drift


@dataclass(frozen=True)
class Condition:
    rule: str
    subject: str
    severity: str  # "warning" or "critical"
    summary: str
    value: float | None = None


Rule = Callable[[Observations, Thresholds], list[Condition]]


def training_failure_rate(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 004: failed runs of the training, fine-tune and distillation jobs over all of them
    that ended in the window, above the bound."""
    if not seen.training_runs:
        return []
    failed = sum(1 for run in seen.training_runs if not run.succeeded)
    rate = failed / len(seen.training_runs)
    if rate <= bounds.training_failure_rate:
        return []
    return [
        Condition(
            "training_failure_rate",
            ALL,
            "critical",
            f"{failed} of {len(seen.training_runs)} training runs failed in the last "
            f"{bounds.training_window_hours:g} h ({rate:.0%}, bound "
            f"{bounds.training_failure_rate:.0%}); `thunder status` and the runs' logs say why",
            rate,
        )
    ]


def cleanup_overdue(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 004: no successful hourly cleanup for longer than the bound (counted from the
    instance's first run when there has never been one)."""
    since = seen.last_cleanup or seen.in_use_since
    if since is None:
        return []
    hours = (seen.now - since).total_seconds() / 3600
    if hours <= bounds.cleanup_overdue_hours:
        return []
    what = "the last successful cleanup" if seen.last_cleanup else "first use, with no cleanup"
    return [
        Condition(
            "cleanup_overdue",
            ALL,
            "warning",
            f"{hours:.1f} h since {what} (bound {bounds.cleanup_overdue_hours:g} h): is "
            "cleanup_schedule running, and the daemon?",
            hours,
        )
    ]


def embedding_backlog(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 004: chunks waiting to be embedded, per agent, above the bound."""
    return [
        Condition(
            "embedding_backlog",
            agent,
            "warning",
            f"{count} chunks of {agent} are not embedded (bound {bounds.embedding_backlog}): "
            "materialize chunk_embeddings for the agent, or see its failed documents",
            float(count),
        )
        for agent, count in sorted(seen.embedding_backlog.items())
        if count > bounds.embedding_backlog
    ]


def high_latency(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 003: the p95 latency of an agent's answers over the last minutes, above the bound
    (judged only on enough answers)."""
    return [
        Condition(
            "high_latency",
            agent,
            "warning",
            f"p95 latency of {agent} is {p95:.0f} ms over {count} answers in the last "
            f"{bounds.latency_window_minutes:g} min (bound {bounds.latency_p95_ms:g} ms)",
            p95,
        )
        for agent, (p95, count) in sorted(seen.latency_p95_ms.items())
        if count >= bounds.latency_min_queries and p95 > bounds.latency_p95_ms
    ]


def low_quality(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 003: a challenger that scores worse than its champion on the same held-out data
    (a generator's test loss, a classifier's macro F1), or an A/B test that retired a
    challenger in the last event_hours."""
    found = []
    for agent, versions in sorted(seen.versions.items()):
        if versions.challenger_worse:
            found.append(
                Condition(
                    "low_quality",
                    agent,
                    "warning",
                    f"challenger {versions.challenger} of {agent} has {versions.measure} "
                    f"{versions.challenger_score:.3f}, worse than champion {versions.champion}'s "
                    f"{versions.champion_score:.3f}",
                    abs(versions.challenger_score - versions.champion_score),
                )
            )
    window = timedelta(hours=bounds.event_hours)
    for event in _latest_events(seen, window):
        if event.decision == "retire" and event.agent_id not in {c.subject for c in found}:
            found.append(
                Condition(
                    "low_quality",
                    event.agent_id,
                    "warning",
                    f"the A/B test of {event.agent_id} retired challenger {event.challenger}: "
                    "it did no better than the champion",
                )
            )
    return found


def ab_significant(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 003: an A/B test that reached significance (its challenger promoted) in the last
    event_hours."""
    return [
        Condition(
            "ab_significant",
            event.agent_id,
            "info",
            f"the A/B test of {event.agent_id} reached significance: challenger "
            f"{event.challenger} promoted to champion",
        )
        for event in _latest_events(seen, timedelta(hours=bounds.event_hours))
        if event.decision == "promote"
    ]


def resource_exhaustion(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 003: free disk under THUNDER_HOME below the bound; the query-log spool holding more
    rows than the bound (the store is not taking them)."""
    found = []
    if seen.free_disk_bytes is not None and seen.free_disk_bytes < bounds.min_free_disk_gb * 2**30:
        found.append(
            Condition(
                "resource_exhaustion",
                "disk",
                "critical",
                f"{seen.free_disk_bytes / 2**30:.2f} GiB free under THUNDER_HOME (bound "
                f"{bounds.min_free_disk_gb:g} GiB): the cleanup keeps fewer versions with "
                "keep_versions lower",
                seen.free_disk_bytes / 2**30,
            )
        )
    if seen.spool_rows > bounds.spool_rows:
        found.append(
            Condition(
                "resource_exhaustion",
                "spool",
                "critical",
                f"{seen.spool_rows} answers and ratings wait in the query-log spool (bound "
                f"{bounds.spool_rows}): the store is not taking writes; /healthz says why",
                float(seen.spool_rows),
            )
        )
    return found


def drift(seen: Observations, bounds: Thresholds) -> list[Condition]:
    """seed 001: an agent's latest daily drift score (p95) above the bound."""
    return [
        Condition(
            "drift",
            agent,
            "warning",
            f"drift of {agent}'s queries on {day} is {score:.2f} at p95 (bound "
            f"{bounds.drift_p95:g} standard deviations of its own text): its users ask about "
            "what its documents do not cover",
            score,
        )
        for agent, (day, score) in sorted(seen.drift.items())
        if score > bounds.drift_p95
    ]


def _latest_events(seen: Observations, window: timedelta) -> list[AbEvent]:
    """Each agent's latest A/B decision, when it falls within `window` of now."""
    latest: dict[str, AbEvent] = {}
    for event in sorted(seen.ab_events, key=lambda event: event.at):
        latest[event.agent_id] = event
    return [e for _, e in sorted(latest.items()) if seen.now - e.at <= window]


RULES: tuple[Rule, ...] = (
    training_failure_rate,
    cleanup_overdue,
    embedding_backlog,
    high_latency,
    low_quality,
    resource_exhaustion,
    ab_significant,
    drift,
)


def evaluate(seen: Observations, bounds: Thresholds) -> list[Condition]:
    return [condition for rule in RULES for condition in rule(seen, bounds)]
