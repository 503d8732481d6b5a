from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from tests.services import SERVICES, postgres_database
from thunder_dagster.feedback.abtest import summarize
from thunder_dagster.feedback.database import HEAD_REVISION, MIGRATIONS
from thunder_dagster.feedback.records import QueryRecord, VariantOutcome
from thunder_dagster.feedback.store import QueryStore, UnknownQueryError
from thunder_dagster.times import utc_now

pytestmark = [pytest.mark.clock, SERVICES]  # the answers depend on the day or the hour


def record(agent="a", confidence=0.9, fallback=False, variant="champion", version="1.0.0", **kw):
    return QueryRecord(
        agent_id=agent,
        user_id=kw.get("user", "u1"),
        variant=variant,
        model_version=version,
        prompt=kw.get("prompt", "to be"),
        response=kw.get("response", " or not"),
        confidence=confidence,
        fallback=fallback,
        latency_ms=1.0,
        teacher_confidence=kw.get("teacher"),
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request, tmp_path):
    """The same tests on the embedded SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        opened = QueryStore.open(f"sqlite:///{tmp_path}/queries.db")
        yield opened
        opened.close()
        return
    with postgres_database() as url:
        opened = QueryStore.open(url)
        yield opened
        opened.close()


def test_alembic_builds_the_schema_and_reopening_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path}/queries.db"
    first = QueryStore.open(url)
    first.log_query(record())
    first.close()
    again = QueryStore.open(url)
    tables = set(inspect(again.engine).get_table_names())
    assert {"query_logs", "feedback", "analyses", "response_cache", "alembic_version"} <= tables
    assert again.stats("a", datetime(2000, 1, 1), datetime(2100, 1, 1)).total_queries == 1
    again.close()


def test_the_head_revision_the_store_skips_alembic_at_is_alembics_own_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_stats_count_the_window_only(store):
    day = datetime(2026, 3, 1)
    ids = [
        store.log_query(record(confidence=0.9), at=day + timedelta(hours=1)),
        store.log_query(record(confidence=0.5, fallback=True), at=day + timedelta(hours=2)),
        store.log_query(record(confidence=0.7), at=day + timedelta(hours=3)),
    ]
    store.log_query(record(confidence=0.1), at=day - timedelta(seconds=1))
    store.log_query(record(confidence=0.1), at=day + timedelta(days=1))
    store.log_query(record(agent="b"), at=day + timedelta(hours=1))
    store.add_feedback(ids[0], 5)
    store.add_feedback(ids[1], 2, "wrong")
    stats = store.stats("a", day, day + timedelta(days=1))
    assert stats.total_queries == 3
    assert stats.avg_confidence == pytest.approx(0.7)
    assert stats.teacher_fallbacks == 1 and stats.fallback_rate == pytest.approx(1 / 3)
    assert stats.high_confidence_responses == 1
    assert stats.user_feedback_available == 2 and stats.positive_feedback == 1
    assert stats.feedback_rate == pytest.approx(2 / 3)


def test_feedback_on_an_unknown_query_is_refused_and_repeated_feedback_replaces(store):
    with pytest.raises(UnknownQueryError, match="nope"):
        store.add_feedback("nope", 3)
    query_id = store.log_query(record())
    store.add_feedback(query_id, 1)
    store.add_feedback(query_id, 5)
    assert store.stats("a", datetime(2000, 1, 1), datetime(2100, 1, 1)).positive_feedback == 1


def test_fine_tune_rows_are_well_rated_unused_and_marked_by_one_run_only(store):
    good = [store.log_query(record(prompt=f"p{i}")) for i in range(3)]
    bad = store.log_query(record())
    for query_id in good:
        store.add_feedback(query_id, 4)
    store.add_feedback(bad, 3)
    picked = store.fine_tune_examples("a", limit=10)
    assert [example.query_id for example in picked] == good
    assert store.mark_used(good, "run-1") == 3
    assert store.mark_used(good, "run-2") == 0
    assert set(store.used_by("run-1")) == set(good)
    assert store.used_by("run-2") == []
    assert store.fine_tune_examples("a", limit=10) == []


def test_distillation_rows_are_answers_whose_teacher_was_confident(store):
    day = datetime(2026, 3, 1)
    teacher = store.log_query(record(fallback=True, confidence=0.2, teacher=0.85), at=day)
    store.log_query(record(fallback=True, confidence=0.9, teacher=0.79), at=day)
    store.log_query(record(fallback=False, confidence=0.99), at=day)
    # A row from before the teacher had its own column: its confidence was the teacher's.
    older = store.log_query(record(fallback=True, confidence=0.88), at=day - timedelta(days=1))
    examples = store.distillation_examples("a", 0.8, 500)
    assert [e.query_id for e in examples] == [teacher, older]


def test_the_statistics_average_the_local_models_confidence_even_when_the_teacher_answered(
    store,
):

    day = datetime(2026, 3, 1)
    store.log_query(record(confidence=0.7), at=day + timedelta(hours=1))
    store.log_query(
        record(confidence=0.3, fallback=True, teacher=0.95), at=day + timedelta(hours=2)
    )
    stats = store.stats("a", day, day + timedelta(days=1))
    assert stats.avg_confidence == pytest.approx(0.5)
    assert stats.high_confidence_responses == 0 and stats.teacher_fallbacks == 1


def test_the_response_cache_expires(store):
    key = store.cache_response("a", "1.0.0", "hello|0", "world", 0.9, timedelta(minutes=5))
    assert store.cached_response(key).response == "world"
    later = utc_now() + timedelta(hours=1)
    assert store.cached_response(key, now=later) is None
    assert store.purge_expired_cache(now=later) == 1


def test_ratings_count_people_one_user_cannot_fire_a_rule_or_decide_a_test(store):
    from tests.factories import log
    from thunder_dagster.feedback.rules import decide

    day = datetime(2026, 3, 3, 1, tzinfo=UTC)
    # One key rates 50 of its own answers 5: five count, from one rater.
    log(store, 50, day, agent="solo", score=5, user_id="key-one")
    alone = store.stats("solo", day, day + timedelta(days=1))
    assert (alone.positive_feedback, alone.user_feedback_available, alone.raters) == (5, 5, 1)
    assert decide(alone).change == "none"
    # Fifty people rating one answer each fire it.
    log(store, 50, day, agent="crowd", score=5)
    crowd = store.stats("crowd", day, day + timedelta(days=1))
    assert (crowd.positive_feedback, crowd.raters) == (50, 50)
    assert decide(crowd).change == "fine_tune"
    # A rating given again replaces the first: one answer, one rating.
    (query_id,) = log(store, 1, day, agent="again", score=2)
    store.add_feedback(query_id, 5)
    assert store.stats("again", day, day + timedelta(days=1)).user_feedback_available == 1
    # A/B: of one user's 50 ratings of a variant, 20 count; every answer still counts.
    log(store, 50, day, agent="ab", score=5, user_id="key-one", variant="challenger")
    (outcome,) = store.outcomes("ab", day - timedelta(days=1))
    assert (outcome.queries, len(outcome.scores)) == (50, 20)


def test_a_classifiers_answer_is_right_by_its_users_label_and_else_by_its_score(store):
    """What an A/B test of classifiers counts: with a label, the label decides whatever the
    score; without one, a score of 4 or 5; an unrated answer is an answer, not a rating."""
    from tests.factories import log

    day = datetime(2026, 3, 3, 1, tzinfo=UTC)
    ids = log(store, 5, day, agent="topics", response="baking", variant="challenger")
    store.add_feedback(ids[0], 1, label="baking")  # right, though rated 1
    store.add_feedback(ids[1], 5, label="sailing")  # wrong, though rated 5
    store.add_feedback(ids[2], 4)  # right by its score
    store.add_feedback(ids[3], 3)  # wrong by its score
    (outcome,) = store.outcomes("topics", day - timedelta(days=1))
    assert outcome.queries == 5 and outcome.scores == (1, 5, 4, 3)
    assert outcome.rights() == (True, False, True, False)
    assert summarize(outcome).positive == 2
    # A generator's outcome built without the flags counts its scores of 4 and 5.
    assert VariantOutcome("x", "1", 2, (5, 2)).rights() == (True, False)


def test_labels_users_give_are_read_back_by_query_and_counted_by_people(store):
    from tests.factories import log
    from thunder_dagster.feedback.records import LABELS_PER_USER

    day = datetime(2026, 3, 3, 1, tzinfo=UTC)
    window = (day, day + timedelta(days=1))
    ids = log(store, 6, day, agent="topics", prompt="the ship left", response="baking")
    for n, query_id in enumerate(ids[:4]):
        store.add_feedback(query_id, 1, at=day + timedelta(minutes=n), label="sailing")
    store.add_feedback(ids[4], 5, at=day + timedelta(minutes=9), label="baking")  # confirmed
    store.add_feedback(ids[5], 2)  # a rating without a label
    given = store.corrections("topics")
    assert [c.query_id for c in given] == ids[:5]
    assert [c.label for c in given] == ["sailing"] * 4 + ["baking"]
    assert {(c.text, c.answered) for c in given} == {("the ship left", "baking")}
    assert given[0].user_id == "u0" and given[0].at == day
    # The rule counts corrections (another label than the answer's), not confirmations.
    assert store.correction_counts("topics", *window) == (4, 4)
    assert store.correction_counts("topics", day + timedelta(days=1), day + timedelta(days=2)) == (
        0,
        0,
    )
    # One key's 60 corrections: 5 count toward the rule, its latest 50 become examples.
    solo = log(store, 60, day, agent="solo", user_id="key-one", response="baking")
    for n, query_id in enumerate(solo):
        store.add_feedback(query_id, 1, at=day + timedelta(seconds=n), label="music")
    assert store.correction_counts("solo", *window) == (5, 1)
    kept = store.corrections("solo")
    assert [c.query_id for c in kept] == solo[-LABELS_PER_USER:]
