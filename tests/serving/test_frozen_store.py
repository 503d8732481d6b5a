"""Issue 29 item 4, against a real PostgreSQL behind a proxy that this test freezes (the
connections stay open and no byte passes, as with a database that hangs rather than refuses):
/livez, /healthz and answers with a key go on at once; the key refresh reads in the background;
the answers given meanwhile reach the log once the database answers again."""

import socket
import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.factories import deploy_tiny
from tests.services import SERVICES, postgres_database
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings

pytestmark = SERVICES


class FreezableProxy:
    """A TCP proxy on loopback; `frozen` holds every byte until it is cleared."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def close(self) -> None:
        self.flowing.set()
        self.listener.close()


def test_a_postgresql_that_hangs_freezes_no_route(home):
    deploy_tiny(home, "acme")
    with postgres_database() as url:
        with QueryStore.open(url) as store:
            _, token = KeyStore(store.engine).create("app", ["generate", "metrics"])
        parsed = make_url(url)
        proxy = FreezableProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        settings = ServerSettings(
            deployments_root=home.root / "deployments",
            query_db_url=proxied,
            reload_seconds=0.05,
            auth="keys",
            key_refresh_seconds=0.5,
        )
        key = {"Authorization": f"Bearer {token}"}
        body = {"prompt": "Hi", "user_id": "u", "max_tokens": 2}
        try:
            with TestClient(create_app(settings)) as client:
                assert client.post("/v1/agents/acme/generate", json=body, headers=key).is_success
                proxy.flowing.clear()  # the database hangs
                time.sleep(0.6)  # the keys are due for a refresh
                began = time.monotonic()
                assert client.get("/livez").status_code == 200
                answered = [
                    client.post("/v1/agents/acme/generate", json=body, headers=key)
                    for _ in range(3)
                ]
                assert [a.status_code for a in answered] == [200, 200, 200]
                assert client.get("/healthz", headers=key).status_code == 200
                assert time.monotonic() - began < 5, "a route waited on the hung database"
                proxy.flowing.set()  # it answers again
                client.app.state.writer.flush()
                with QueryStore.open(url) as store:
                    logged = [store.query(a.json()["query_id"]) for a in answered]
                assert all(logged)
        finally:
            proxy.close()
