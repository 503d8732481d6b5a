"""API keys on the model server: 401 without a valid key, 403 without the scope or the agent,
the A/B user from the key (or from a backend the key trusts), revocation within the refresh,
the audit log of admin actions; and `thunder serve`'s refusal to listen openly off loopback."""

import click
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from thunder_dagster.access.keys import AccessError, KeyStore, authenticate
from thunder_dagster.cli.main import main
from thunder_dagster.cli.server import serving_auth as _serving_auth
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings


def settings(home, **overrides):
    defaults = {
        "query_db_url": home.queries_db_url,
        "reload_seconds": 0.05,
        "challenger_share": 0.5,
        "auth": "keys",
        "key_refresh_seconds": 0.0,
    }
    return ServerSettings(deployments_root=home.root / "deployments", **(defaults | overrides))


@pytest.fixture
def keys(store):
    return KeyStore(store.engine)


@pytest.fixture
def served(home, keys):
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    deploy_tiny(home, "other")
    with TestClient(create_app(settings(home))) as client:
        yield client


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def generate(client, token=None, agent="acme", user="u1"):
    headers = bearer(token) if token else {}
    body = {"prompt": "the ", "max_tokens": 4, "user_id": user, "temperature": 0}
    return client.post(f"/v1/agents/{agent}/generate", json=body, headers=headers)


def test_a_token_authenticates_only_its_own_active_key(keys):
    key, token = keys.create("app", ["generate"])
    active = keys.active()
    assert authenticate(token, active).key_id == key.id
    assert authenticate(token[:-1] + ("A" if token[-1] != "A" else "B"), active) is None
    assert authenticate("thd_nothex_x", active) is None
    (listed,) = keys.listed()
    assert listed.id == key.id and "secret" not in repr(listed) and token not in repr(listed)
    keys.revoke(key.id)
    assert authenticate(token, keys.active()) is None
    with pytest.raises(AccessError, match="give one or more of generate, feedback, admin"):
        keys.create("bad", ["everything"])


def test_401_without_or_with_a_wrong_key_and_403_without_the_scope_or_agent(served, keys):
    _, generating = keys.create("app", ["generate"], agents=["acme"])
    _, rating = keys.create("rater", ["feedback"])
    missing = generate(served)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "thunder keys create" in missing.json()["detail"]
    assert generate(served, "thd_000000000000_" + "x" * 43).status_code == 401
    assert generate(served, generating).status_code == 200
    other = generate(served, generating, agent="other")
    assert other.status_code == 403 and "for agent 'other'" in other.json()["detail"]
    assert generate(served, rating).status_code == 403
    rated = served.post(
        "/v1/feedback", json={"query_id": "nope", "score": 5}, headers=bearer(generating)
    )
    assert rated.status_code == 403 and "scope 'feedback'" in rated.json()["detail"]
    searched = served.post("/v1/agents/acme/search", json={"query": "x"}, headers=bearer(rating))
    assert searched.status_code == 403
    assert served.get("/healthz").status_code == 200  # probes need no key


def test_the_ab_user_is_the_key_unless_the_key_trusts_its_caller_to_name_users(served, keys):
    _, plain = keys.create("app", ["generate"])
    _, backend = keys.create("backend", ["generate"], trusts_user_ids=True)
    # Whatever user_id a plain key's caller sends, it is one user: one variant for all.
    variants = {generate(served, plain, user=f"user-{n}").json()["variant"] for n in range(20)}
    assert len(variants) == 1
    # A trusted backend's users split between the arms.
    trusted = {generate(served, backend, user=f"user-{n}").json()["variant"] for n in range(20)}
    assert trusted == {"champion", "challenger"}


def test_a_revoked_key_is_refused_at_the_next_refresh(served, keys):
    key, token = keys.create("app", ["generate"])
    assert generate(served, token).status_code == 200
    keys.revoke(key.id)
    assert generate(served, token).status_code == 401


def test_admin_reads_the_audit_log_and_the_read_is_audited(served, keys):
    _, admin = keys.create("ops", ["admin"])
    _, app = keys.create("app", ["generate"])
    keys.record("cli:ops", "key.create", "key:abc", "r-1", "ok")
    assert served.get("/v1/admin/audit", headers=bearer(app)).status_code == 403
    first = served.get("/v1/admin/audit", headers=bearer(admin))
    assert first.status_code == 200
    # The refused read is recorded as denied, with the key that tried.
    assert [(e["action"], e["outcome"]) for e in first.json()] == [
        ("audit.read", "denied"),
        ("key.create", "ok"),
    ]
    assert "(app)" in first.json()[0]["actor"]
    served.get("/v1/admin/audit", headers=bearer(admin) | {"X-Request-Id": "req-42"})
    third = served.get("/v1/admin/audit", headers=bearer(admin)).json()
    # Each read is recorded after it: the third sees the first two, newest first.
    assert [e["action"] for e in third] == ["audit.read"] * 3 + ["key.create"]
    assert third[0]["request_id"] == "req-42" and third[0]["actor"].startswith("key:")
    assert third[0]["detail"] == "returned 3" and third[1]["detail"] == "returned 2"


def test_serve_refuses_an_open_server_off_loopback_and_allows_it_on_loopback(home, keys):
    url = home.queries_db_url
    assert _serving_auth("127.0.0.1", url) == "open"
    assert _serving_auth("localhost", url) == "open"
    with pytest.raises(click.ClickException, match=r"refusing to listen on 0\.0\.0\.0 without"):
        _serving_auth("0.0.0.0", url)
    keys.create("app", ["generate"])
    assert _serving_auth("0.0.0.0", url) == "keys"
    assert _serving_auth("127.0.0.1", url) == "keys"  # keys exist: they are required


def test_thunder_keys_create_list_revoke_and_audit(home):
    runner = CliRunner()
    made = runner.invoke(main, ["keys", "create", "app", "--scope", "generate", "--agent", "acme"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[0]
    assert token.startswith("thd_")
    key_id = token.split("_")[1]
    listed = runner.invoke(main, ["keys", "list"])
    assert key_id in listed.output and "acme" in listed.output and token not in listed.output
    assert runner.invoke(main, ["keys", "revoke", key_id]).exit_code == 0
    unknown = runner.invoke(main, ["keys", "revoke", "feedfeedfeed"])
    assert unknown.exit_code != 0 and "no key 'feedfeedfeed'" in unknown.output
    audited = runner.invoke(main, ["audit"])
    lines = audited.output.splitlines()
    assert [line.split()[4] for line in lines[2:]] == ["key.revoke", "key.revoke", "key.create"]
    assert "failed" in lines[2] and "ok" in lines[3]
    with QueryStore.open(home.queries_db_url) as store:
        assert KeyStore(store.engine).listed()[0].revoked_at is not None


def test_admin_sees_what_serves_and_every_version_with_its_card(served, keys, home):
    _, admin = keys.create("ops", ["admin"])
    _, acme_only = keys.create("acme-ops", ["admin"], agents=["acme"])
    deployments = served.get("/v1/admin/deployments", headers=bearer(admin))
    assert deployments.status_code == 200
    by_agent = {entry["agent_id"]: entry for entry in deployments.json()}
    assert set(by_agent) == {"acme", "other"}
    champion = by_agent["acme"]["roles"]["champion"]
    assert champion["version"] == "1.0.0" and champion["family"] == "gru"
    assert by_agent["acme"]["roles"]["challenger"]["version"] == "1.1.0"
    assert by_agent["acme"]["roles"]["teacher"] is None
    limited = served.get("/v1/admin/deployments", headers=bearer(acme_only)).json()
    assert [entry["agent_id"] for entry in limited] == ["acme"]
    listed = served.get("/v1/admin/agents/acme/versions", headers=bearer(admin))
    assert listed.status_code == 200
    assert [(v["version"], v["roles"]) for v in listed.json()] == [
        ("1.1.0", ["challenger"]),
        ("1.0.0", ["champion"]),
    ]
    assert all(v["family"] == "gru" and v["deployed_at"] for v in listed.json())
    assert (
        served.get("/v1/admin/agents/other/versions", headers=bearer(acme_only)).status_code == 403
    )
    assert served.get("/v1/admin/agents/nobody/versions", headers=bearer(admin)).status_code == 404
    actions = [(e.action, e.outcome) for e in keys.audit()]
    assert actions == [
        ("versions.read", "failed"),
        ("versions.read", "denied"),
        ("versions.read", "ok"),
        ("deployments.read", "ok"),
        ("deployments.read", "ok"),
    ]


def test_a_request_id_the_audit_log_cannot_hold_is_refused_before_the_action(served, keys):
    _, admin = keys.create("ops", ["admin"])
    for request_id in ("r" * 65, "bad\tid"):
        refused = served.get(
            "/v1/admin/audit", headers=bearer(admin) | {"X-Request-Id": request_id}
        )
        assert refused.status_code == 400
        assert "X-Request-Id" in refused.json()["detail"] and "64" in refused.json()["detail"]
    assert keys.audit() == []  # nothing was read, so nothing was recorded
    fine = served.get("/v1/admin/audit", headers=bearer(admin) | {"X-Request-Id": "r" * 64})
    assert fine.status_code == 200 and keys.audit()[0].request_id == "r" * 64


def test_a_trusted_user_id_that_would_not_fit_the_query_log_is_refused_by_field(served, keys):
    _, backend = keys.create("backend", ["generate"], trusts_user_ids=True)
    fits = generate(served, backend, user="u" * (128 - 13))
    assert fits.status_code == 200
    too_long = generate(served, backend, user="u" * (128 - 12))
    assert too_long.status_code == 422 and "user_id" in too_long.text and "115" in too_long.text


def test_a_key_made_while_an_open_server_runs_takes_effect_within_the_refresh(home, keys):
    deploy_tiny(home, "acme")
    with TestClient(create_app(settings(home, auth="open"))) as client:
        assert generate(client).status_code == 200  # open: no key needed
        _, token = keys.create("app", ["generate"])
        refused = generate(client)
        assert refused.status_code == 401 and "API key is required" in refused.text
        assert generate(client, token).status_code == 200


def test_an_open_server_answers_only_loopback_host_names(home):
    """DNS rebinding: a web page's script reaches 127.0.0.1 under its own name; the Host it
    sends is refused, the loopback names are served."""
    deploy_tiny(home, "acme")
    loopback = frozenset({"localhost", "127.0.0.1", "::1"})
    with TestClient(create_app(settings(home, auth="open", open_hosts=loopback))) as client:
        for host in ("evil.example", "evil.example:8000", "10.0.0.7:8000"):
            refused = client.get("/v1/models", headers={"Host": host})
            assert refused.status_code == 403 and "DNS rebinding" in refused.text, host
            assert (
                client.post(
                    "/v1/agents/acme/generate",
                    json={"prompt": "Hi", "user_id": "u", "max_tokens": 2},
                    headers={"Host": host},
                ).status_code
                == 403
            )
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
            assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host
