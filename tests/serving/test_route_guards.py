"""No route forgets its key check: every operation of the served API document is called without
credentials on a server with keys (each answers 401 but the public probes), then every
operation that acts on an agent's data with a key limited to another agent (each answers 403).
A route added without the caller dependency fails the walk, as the last test shows."""

from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings

PUBLIC = {"/livez", "/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
PUBLIC |= {"/redoc"}
# What fills each path parameter; the checks answer before the object is looked up.
PARAMETERS = {"agent_id": "acme", "test_id": "0123456789ab", "run_id": "0123456789abcdef"}
PARAMETERS |= {"category": "reference", "filename": "notes.txt"}


def keyed(home) -> ServerSettings:
    return ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        auth="keys",
        key_refresh_seconds=0.0,
        # The admin runs' router is included; nothing listens there, and no check reaches it.
        dagster_url="http://127.0.0.1:9",
    )


def operations(client: TestClient) -> list[tuple[str, str]]:
    """(method, path) of every operation the served document lists, parameters filled."""
    document = client.get("/openapi.json").json()
    return [
        (method.upper(), path.format(**PARAMETERS))
        for path, item in document["paths"].items()
        for method in item
    ]


def route_paths(routes) -> list[str]:
    """Every route's path, those of included routers too."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        found += route_paths(included.routes) if included is not None else [route.path]
    return found


def unguarded(client: TestClient, headers: dict | None = None, expected: int = 401) -> list:
    """The operations that do not answer `expected` (the public probes aside)."""
    found = []
    for method, path in operations(client):
        if path in PUBLIC:
            continue
        answer = client.request(method, path, json={}, headers=headers or {})
        if answer.status_code != expected:
            found.append((method, path, answer.status_code))
    return found


def test_every_operation_needs_a_key_and_a_limited_key_reaches_only_its_agents(home, store):
    deploy_tiny(home, "acme")
    keys = KeyStore(store.engine)
    _, other_only = keys.create("other-only", ["generate", "feedback", "admin"], agents=["other"])
    with TestClient(create_app(keyed(home))) as client:
        listed = operations(client)
        assert ("POST", "/v1/admin/agents/acme/training") in listed  # the runs' router too
        assert len(listed) >= 20
        assert unguarded(client) == []
        # Every route the app has is in the document or public: none hides from the walk.
        routed = {path.format(**PARAMETERS) for path in route_paths(client.app.routes)}
        assert routed <= {path for _, path in listed} | PUBLIC
        limited = {"Authorization": f"Bearer {other_only}"}
        bearing = [(m, p) for m, p in listed if "/agents/acme" in p]
        assert len(bearing) >= 10
        for method, path in bearing:
            answer = client.request(method, path, json={}, headers=limited)
            assert answer.status_code == 403, (method, path, answer.text)


def test_a_limited_key_never_reaches_another_agents_objects(home, store):
    """The routes whose agent is not in the path: a rating, an A/B test, the audit log."""
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    keys = KeyStore(store.engine)
    _, acme_key = keys.create("acme-all", ["generate", "feedback", "admin"], agents=["acme"])
    _, other_key = keys.create("other-all", ["generate", "feedback", "admin"], agents=["other"])
    as_acme = {"Authorization": f"Bearer {acme_key}"}
    as_other = {"Authorization": f"Bearer {other_key}"}
    with TestClient(create_app(keyed(home))) as client:
        answer = client.post(
            "/v1/agents/acme/generate", json={"prompt": "Hi", "user_id": "u"}, headers=as_acme
        )
        query_id = answer.json()["query_id"]
        rating = {"query_id": query_id, "score": 5}
        assert client.post("/v1/feedback", json=rating, headers=as_other).status_code == 403
        assert client.post("/v1/feedback", json=rating, headers=as_acme).status_code == 200
        test = client.post("/v1/admin/agents/acme/ab-tests", json={"split": 0.2}, headers=as_acme)
        assert test.status_code == 201
        path = f"/v1/admin/ab-tests/{test.json()['id']}"
        assert client.get(path, headers=as_other).status_code == 403
        assert client.post(f"{path}/stop", json={}, headers=as_other).status_code == 403
        seen = client.get("/v1/admin/audit", headers=as_other).json()
        assert all(entry["target"] == "agent:other" for entry in seen)
        assert client.get("/v1/admin/audit", headers=as_acme).json()[0]["target"] == "agent:acme"


def test_the_walk_finds_a_route_added_without_the_key_check(home, store):
    deploy_tiny(home, "acme")
    app = create_app(keyed(home))

    @app.post("/v1/agents/{agent_id}/forgotten")
    def forgotten(agent_id: str) -> dict:
        return {"agent_id": agent_id}

    with TestClient(app) as client:
        assert unguarded(client) == [("POST", "/v1/agents/acme/forgotten", 200)]


def test_refusals_are_audited_within_a_budget_per_client(home, store):
    """A client hammering with bad keys costs at most DENIALS_PER_MINUTE audit rows a minute;
    the rest are counted in /metrics."""
    from thunder_dagster.serving.api.audit import DENIALS_PER_MINUTE

    deploy_tiny(home, "acme")
    keys = KeyStore(store.engine)
    keys.create("app", ["generate"])
    _, scraper = keys.create("prometheus", ["metrics"])
    bad = {"Authorization": "Bearer thd_000000000000_" + "x" * 43}
    body = {"prompt": "Hi", "user_id": "u"}
    with TestClient(create_app(keyed(home))) as client:
        for _ in range(DENIALS_PER_MINUTE + 10):
            assert (
                client.post("/v1/agents/acme/generate", json=body, headers=bad).status_code == 401
            )
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {scraper}"}).text
    denied = [entry for entry in keys.audit(1000) if entry.outcome == "denied"]
    # The budget resets at each minute's turn: a run that straddles one may write a few more.
    assert DENIALS_PER_MINUTE <= len(denied) < DENIALS_PER_MINUTE + 10
    assert {(e.action, e.actor, e.target) for e in denied} == {
        ("generate.post", "anonymous", "agent:acme")
    }
    dropped = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("thunder_audit_dropped_total")
    )
    assert dropped == DENIALS_PER_MINUTE + 10 - len(denied)


def test_on_a_keyed_server_the_agents_names_need_a_metrics_or_admin_key(home, store):
    deploy_tiny(home, "acme")
    keys = KeyStore(store.engine)
    _, scraper = keys.create("prometheus", ["metrics"])
    _, app_key = keys.create("app", ["generate"])
    (home.root / "deployments" / "secret-agent").mkdir(parents=True)
    (home.root / "deployments" / "secret-agent" / "champion.json").write_text("{broken")
    with TestClient(create_app(keyed(home))) as client:
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 200 and set(anonymous.json()) == {"status", "problems"}
        assert "acme" not in anonymous.text and "secret-agent" not in anonymous.text
        assert anonymous.json()["status"] == "degraded"
        assert client.get("/metrics").status_code == 401
        generating = {"Authorization": f"Bearer {app_key}"}
        assert client.get("/metrics", headers=generating).status_code == 403
        assert "acme" not in client.get("/healthz", headers=generating).text
        scraping = {"Authorization": f"Bearer {scraper}"}
        metrics = client.get("/metrics", headers=scraping)
        assert metrics.status_code == 200 and 'agent="acme"' in metrics.text
        full = client.get("/healthz", headers=scraping).json()
        assert "acme" in full["agents"]
        assert any(p.get("agent") == "secret-agent" for p in full["problems"])
