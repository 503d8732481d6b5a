"""Issue 29 item 10: the query log keeps an agent's answers its `retention_days` (90 unless
agent.json says otherwise), except those a dataset used and those a running A/B test compares;
`thunder forget USER_ID` deletes a user's answers, ratings and spooled rows and audits it
under a hash of the id."""

import json
from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import update

from tests.factories import log
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.feedback.experiments import AbTestStore
from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.feedback.retention import user_hash
from thunder_dagster.feedback.schema import AbTestRow
from thunder_dagster.jobs.maintenance import purge_old_answers
from thunder_dagster.serving.spool import Spool
from thunder_dagster.tasks.agents import settings_path
from thunder_dagster.times import utc_now


def test_old_answers_go_after_each_agents_retention_but_not_those_still_in_use(home, store):
    now = utc_now()
    old = log(store, 3, now - timedelta(days=100), agent="acme", score=5)
    recent = log(store, 2, now - timedelta(days=10), agent="acme")
    store.mark_used([old[0]], "run-1")  # a fine-tune's dataset took it
    home.create_agent("brief")
    settings_path(home.agent_dir("brief")).write_text(json.dumps({"retention_days": 7}))
    brief = log(store, 2, now - timedelta(days=10), agent="brief")
    # An A/B test that has run for 120 days still compares everything since it began.
    tested = log(store, 2, now - timedelta(days=100), agent="tested")
    test = AbTestStore(store.engine).create("tested", "1.0.0", "1.1.0", 0.5, "ops")
    with store.engine.begin() as connection:
        connection.execute(
            update(AbTestRow)
            .where(AbTestRow.id == test.id)
            .values(created_at=now - timedelta(days=120))
        )
    warnings = []
    purged = purge_old_answers(home, store, warnings.append)
    assert purged == {"acme": 2, "brief": 2} and warnings == []
    present = {q for q in [*old, *recent, *brief, *tested] if store.query(q) is not None}
    assert present == {old[0], *recent, *tested}
    assert purge_old_answers(home, store, warnings.append) == {}  # nothing more to purge
    settings_path(home.agent_dir("brief")).write_text(json.dumps({"retention_days": "a week"}))
    log(store, 1, now - timedelta(days=30), agent="brief")
    assert purge_old_answers(home, store, warnings.append) == {}
    assert "retention_days 'a week'" in warnings[0]


def test_forget_deletes_a_users_answers_ratings_and_spooled_rows_and_audits_a_hash(home, store):
    from thunder_dagster.cli.main import main as cli

    now = utc_now()
    ann = log(store, 2, now, user_id="ann", score=4)
    trusted = log(store, 1, now, user_id="0123456789ab:ann", score=5)
    bob = log(store, 2, now, user_id="bob", score=3)
    near = log(store, 1, now, user_id="anna")
    spool_dir = home.root / "spool"
    dead = Spool(spool_dir)

    def row(query_id: str, user: str):
        return (
            query_id,
            QueryRecord("acme", user, "champion", "1", "p", "r", 0.5, False, 1.0),
            now,
        )

    dead.add_queries([row("s-ann", "ann"), row("s-bob", "bob")])
    dead.close()  # its process is gone: its file may be rewritten
    live = Spool(spool_dir)  # a running server's: left alone, and reported
    live.add_queries([row("l-ann", "ann")])
    try:
        result = CliRunner().invoke(cli, ["forget", "ann", "--yes"])
    finally:
        live.close()
    assert result.exit_code == 0, result.output
    assert "forgot ann: 3 answers, 3 ratings, 0 grades, 1 spool lines" in result.output
    assert "1 spool files of running servers were left" in result.output
    assert [store.query(q) for q in [*ann, *trusted]] == [None] * 3
    assert all(store.query(q) is not None for q in [*bob, *near])
    spooled = "".join(path.read_text() for path in spool_dir.glob("queries-*.jsonl"))
    assert '"s-bob"' in spooled and '"s-ann"' not in spooled
    (entry,) = [e for e in KeyStore(store.engine).audit(10) if e.action == "user.forget"]
    assert entry.target == f"user:{user_hash('ann')}" and "ann" not in entry.target
