"""A/B tests as objects, in the query-log store.

A test names the challenger version it is about (or a serving policy: the champion answering
best-of-n, `best_of_version`), the share of users that version answers
(`split`), the rated answers each variant needs before a decision (`min_sample`, seed 003's
1,000 by default), the confidence of that decision (95%) and the days it may run
(`max_days`, 14 by default). Each agent runs at most one test at a time, with its own split; an
agent whose challenger has no test gets the server's default share. A test ends `promoted` or
`retired` by the A/B evaluation (ab_test_result and champion_promotion), `inconclusive` when
it reaches its maximum duration undecided (its challenger retired), `superseded` when a new
challenger replaces its own, or `stopped` by an operator: from then its challenger answers
nobody, and the next evaluation retires it.

The loop cannot churn: a fine-tune or distillation releases its challenger with a test of its
own, and the daily rules hold the next one back while that test runs within its days.
"""

import secrets
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from thunder_dagster.feedback.abtest import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_SAMPLE,
    AbResult,
    compare,
    outcome_of,
)
from thunder_dagster.feedback.records import VariantOutcome
from thunder_dagster.feedback.schema import AbTestRow
from thunder_dagster.times import utc_now

RUNNING = "running"
# A test of a serving policy rather than of a model: the challenger variant is the champion
# answering best-of-n (its version "1.2.0+best-of-4"), what the query log records its answers
# under too.
BEST_OF_MARK = "+best-of-"


def best_of_version(champion_version: str, candidates: int) -> str:
    return f"{champion_version}{BEST_OF_MARK}{candidates}"


def best_of_in(challenger_version: str) -> tuple[str, int] | None:
    """(the champion's version, n) of a best-of-n challenger; None for a model's version."""
    base, mark, count = challenger_version.partition(BEST_OF_MARK)
    return (base, int(count)) if mark and count.isdigit() else None


# How a test ends: an operator stopped it, the evaluation decided, it ran out of days
# undecided, or a newer challenger took its challenger's place.
ENDINGS = ("stopped", "promoted", "retired", "inconclusive", "superseded")
DEFAULT_MAX_DAYS = 14
# What a challenger released by the feedback loop answers while its test runs.
DEFAULT_SPLIT = 0.2


class AbTestError(ValueError):
    """A test that cannot be made, found or ended: the message says which and why."""


@dataclass(frozen=True)
class AbTest:
    id: str
    agent_id: str
    champion_version: str
    challenger_version: str
    split: float
    min_sample: int
    confidence: float
    max_days: int
    status: str
    created_at: datetime
    created_by: str
    ended_at: datetime | None
    ended_by: str | None
    reason: str | None

    @property
    def alpha(self) -> float:
        return round(1.0 - self.confidence, 10)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def ends_by(self) -> datetime:
        """When the test ends inconclusive if it has not concluded before."""
        return self.created_at + timedelta(days=self.max_days)

    def out_of_days(self, now: datetime) -> bool:
        return self.running and now >= self.ends_by

    def describe(self, now: datetime) -> str:
        days = (now - self.created_at).total_seconds() / 86400
        return (
            f"A/B test {self.id} of {self.challenger_version} against "
            f"{self.champion_version}, running since {self.created_at:%Y-%m-%d %H:%M} UTC "
            f"(day {days:.1f} of {self.max_days})"
        )


def _test(row: AbTestRow) -> AbTest:
    return AbTest(**{field.name: getattr(row, field.name) for field in fields(AbTest)})


class AbTestStore:
    def __init__(self, engine: Engine):
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def create(
        self,
        agent_id: str,
        champion_version: str,
        challenger_version: str,
        split: float,
        actor: str,
        min_sample: int = DEFAULT_MIN_SAMPLE,
        confidence: float = DEFAULT_CONFIDENCE,
        max_days: int = DEFAULT_MAX_DAYS,
    ) -> AbTest:
        if not 0.0 < split < 1.0:
            raise AbTestError(
                f"split {split}: give the challenger's share of users, above 0 and below 1"
            )
        if min_sample < 1:
            raise AbTestError(f"min_sample {min_sample}: give at least 1 rated answer per variant")
        if not 0.5 <= confidence < 1.0:
            raise AbTestError(f"confidence {confidence}: give a level from 0.5 to below 1")
        if max_days < 1:
            raise AbTestError(
                f"max_days {max_days}: give the whole days the test may run, 1 or more"
            )
        row = AbTestRow(
            id=secrets.token_hex(6),
            agent_id=agent_id,
            running_agent=agent_id,
            champion_version=champion_version,
            challenger_version=challenger_version,
            split=split,
            min_sample=min_sample,
            confidence=confidence,
            max_days=max_days,
            status=RUNNING,
            created_at=utc_now(),
            created_by=actor,
        )
        try:
            with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            running = self.running(agent_id)
            raise AbTestError(
                f"agent {agent_id} already runs A/B test {running.id if running else '?'}"
                f"{f' of {running.challenger_version}' if running else ''}: stop it first"
            ) from None
        return _test(row)

    def get(self, test_id: str) -> AbTest:
        with self.sessions() as session:
            row = session.get(AbTestRow, test_id)
        if row is None:
            raise AbTestError(f"no A/B test {test_id!r}: list an agent's tests to find its id")
        return _test(row)

    def listed(self, agent_id: str | None = None) -> list[AbTest]:
        """Tests newest first, of one agent or all."""
        with self.sessions() as session:
            query = select(AbTestRow).order_by(AbTestRow.created_at.desc(), AbTestRow.id)
            if agent_id is not None:
                query = query.where(AbTestRow.agent_id == agent_id)
            return [_test(row) for row in session.scalars(query)]

    def running(self, agent_id: str) -> AbTest | None:
        with self.sessions() as session:
            row = session.scalars(
                select(AbTestRow).where(AbTestRow.running_agent == agent_id)
            ).first()
        return _test(row) if row is not None else None

    def latest(self, agent_id: str, challenger_version: str) -> AbTest | None:
        """The newest test of that challenger version, running or ended."""
        for test in self.listed(agent_id):
            if test.challenger_version == challenger_version:
                return test
        return None

    def latest_per_agent(self) -> dict[str, AbTest]:
        """Each agent's newest test: what a server sets its splits by."""
        found: dict[str, AbTest] = {}
        for test in self.listed():
            found.setdefault(test.agent_id, test)
        return found

    def end(self, test_id: str, status: str, actor: str, reason: str) -> AbTest:
        """End a running test; ending one that already ended is refused with how it ended."""
        if status not in ENDINGS:
            raise ValueError(f"status {status!r}: use one of {', '.join(ENDINGS)}")
        with self.sessions.begin() as session:
            row = session.get(AbTestRow, test_id)
            if row is None:
                raise AbTestError(f"no A/B test {test_id!r}: list an agent's tests to find its id")
            if row.status != RUNNING:
                raise AbTestError(
                    f"A/B test {test_id} already ended: {row.status} at "
                    f"{row.ended_at.isoformat() if row.ended_at else '?'} ({row.reason})"
                )
            row.status, row.running_agent = status, None
            row.ended_at, row.ended_by, row.reason = utc_now(), actor, reason
            return _test(row)


def replace_challenger_test(
    tests: AbTestStore,
    agent_id: str,
    champion_version: str,
    challenger_version: str,
    actor: str,
    split: float = DEFAULT_SPLIT,
    max_days: int = DEFAULT_MAX_DAYS,
) -> tuple[AbTest, AbTest | None]:
    """A test for a challenger just released, and the test it ended: the agent's running one,
    `inconclusive` when it had run out of days, else `superseded` (its challenger is gone from
    the pointer already). The A/B window is the new test's own, from now."""
    from thunder_dagster.times import utc_now

    ended = tests.running(agent_id)
    if ended is not None:
        now = utc_now()
        status = "inconclusive" if ended.out_of_days(now) else "superseded"
        ended = tests.end(
            ended.id,
            status,
            actor,
            f"{challenger_version} replaced {ended.challenger_version} as the challenger "
            f"({ended.describe(now)})",
        )
    test = tests.create(
        agent_id, champion_version, challenger_version, split, actor, max_days=max_days
    )
    return test, ended


def waiting_for(test: AbTest | None, now: datetime) -> str | None:
    """Why a new challenger must wait, or None: a running test within its days holds the next
    challenger back until it concludes (promoted or retired), or ends inconclusive."""
    if test is None or not test.running or test.out_of_days(now):
        return None
    return (
        f"{test.describe(now)} has not concluded; the next challenger waits for its verdict or "
        f"its end inconclusive on {test.ends_by:%Y-%m-%d}"
    )


def challenger_share(
    latest: dict[str, AbTest], agent_id: str, challenger_version: str, default: float
) -> float:
    """The share of users the agent's challenger answers: its running test's split; nothing
    once its test has ended; the server's default when no test was ever made for it."""
    test = latest.get(agent_id)
    if test is None or test.challenger_version != challenger_version:
        return default
    return test.split if test.running else 0.0


def live_result(test: AbTest, outcomes: list[VariantOutcome], measure: str) -> AbResult:
    """The test's result from the answers logged since it began (QueryStore.outcomes), on
    `measure` (abtest.POSITIVE_RATE, or ACCURACY for a classifier's test)."""
    return compare(
        outcome_of(outcomes, "champion", test.champion_version),
        outcome_of(outcomes, "challenger", test.challenger_version),
        test.min_sample,
        test.alpha,
        measure,
    )
