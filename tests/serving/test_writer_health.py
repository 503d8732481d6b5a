"""The query-log writer survives what it is given and /healthz says when it cannot keep up: a
non-finite confidence (an external teacher's NaN while the store is down) is written as a
finite value instead of killing the writer, and a stopped writer thread is reported."""

import math

from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.serving.querylog import QueryLogWriter


def record(**overrides) -> QueryRecord:
    values = {
        "agent_id": "acme",
        "user_id": "u1",
        "variant": "champion",
        "model_version": "v1",
        "prompt": "the ",
        "response": "bread",
        "confidence": 0.5,
        "fallback": True,
        "latency_ms": 3.0,
    }
    return QueryRecord(**(values | overrides))


def test_a_non_finite_confidence_is_logged_finite_and_never_stops_the_writer(tmp_path):
    writer = QueryLogWriter(f"sqlite:///{tmp_path}/queries.db", tmp_path / "spool")
    try:
        odd = writer.submit(
            record(confidence=math.nan, teacher_confidence=math.inf, latency_ms=math.nan)
        )
        after = writer.submit(record(prompt="after"))
        writer.flush()
        assert writer.thread.is_alive() and writer.lost == 0 and writer.problem() is None
        logged = writer.store().query(odd)
        assert logged.confidence == 0.0 and logged.teacher_confidence is None
        assert logged.latency_ms == 0.0 and writer.store().query(after).prompt == "after"
    finally:
        writer.close()


def test_the_spool_takes_no_non_finite_value_either(tmp_path):
    from datetime import UTC, datetime

    from thunder_dagster.serving.querylog import finite_record
    from thunder_dagster.serving.spool import Spool

    spool = Spool(tmp_path / "spool")
    row = finite_record(record(confidence=math.nan, teacher_confidence=-math.inf))
    spool.add_queries([("q1", row, datetime.now(UTC))])  # json with allow_nan=False
    assert spool.queries == 1
    spool.close()


def test_a_stopped_writer_thread_is_reported(tmp_path):
    writer = QueryLogWriter(f"sqlite:///{tmp_path}/queries.db", tmp_path / "spool")
    writer.close()
    assert not writer.thread.is_alive()
    assert "writer thread has stopped" in writer.problem()
