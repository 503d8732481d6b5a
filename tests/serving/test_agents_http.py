"""Issue 30: agents and their documents over HTTP. An admin key creates and reads agents; an
upload key streams documents into them (checked by content, atomically, the same bytes again
changing nothing, too large refused with nothing left behind), lists and removes them; a key
without the scope, or for another agent, is refused."""

import json

import pytest
from fastapi.testclient import TestClient

from tests.factories import CORPUS
from tests.serving.test_route_guards import keyed
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.serving.api.app import create_app

DOCUMENT = "/v1/admin/agents/acme/documents"


@pytest.fixture
def client(home, store):
    keys = KeyStore(store.engine)
    tokens = {
        name: keys.create(name, scopes, agents=agents)[1]
        for name, scopes, agents in (
            ("ops", ["admin"], None),
            ("uploader", ["upload"], None),
            ("app", ["generate"], None),
            ("other", ["upload"], ["other"]),
        )
    }
    with TestClient(create_app(keyed(home))) as served:
        served.as_ = {name: {"Authorization": f"Bearer {t}"} for name, t in tokens.items()}
        yield served


def test_an_admin_creates_an_agent_and_reads_its_state(client, home):
    ops = client.as_["ops"]
    made = client.post(
        "/v1/admin/agents", json={"id": "acme", "task": "chat", "display_name": "Acme"}, headers=ops
    )
    assert made.status_code == 201, made.text
    assert made.json()["task"] == "chat" and made.json()["display_name"] == "Acme"
    settings = json.loads((home.agent_dir("acme") / "agent.json").read_text())
    assert settings["created_by"].startswith("key:") and settings["task"] == "chat"
    again = client.post("/v1/admin/agents", json={"id": "acme"}, headers=ops)
    assert again.status_code == 409
    bad = client.post("/v1/admin/agents", json={"id": "Not An Id"}, headers=ops)
    assert bad.status_code == 422
    assert [a["id"] for a in client.get("/v1/admin/agents", headers=ops).json()] == ["acme"]
    assert client.get("/v1/admin/agents", headers=client.as_["uploader"]).status_code == 403
    assert client.get("/v1/admin/agents/nobody", headers=ops).status_code == 404


def test_an_upload_key_streams_documents_in_and_out(client, home):
    client.post("/v1/admin/agents", json={"id": "acme"}, headers=client.as_["ops"])
    up = client.as_["uploader"]
    text = (CORPUS / "text" / "tinyshakespeare.txt").read_bytes()[:5000]
    stored = client.put(f"{DOCUMENT}/reference/play.txt", content=text, headers=up)
    assert stored.status_code == 200, stored.text
    answer = stored.json()
    assert answer["bytes"] == len(text) and not answer["unchanged"]
    assert "upload sensor starts an ingest run of acme" in answer["ingest"]
    path = home.category_dir("acme", "reference") / "play.txt"
    assert path.read_bytes() == text
    import hashlib

    assert answer["sha256"] == hashlib.sha256(text).hexdigest()
    again = client.put(f"{DOCUMENT}/reference/play.txt", content=text, headers=up)
    assert again.json()["unchanged"] is True
    pdf = sorted((CORPUS / "pdf").glob("*.pdf"))[0].read_bytes()
    assert client.put(f"{DOCUMENT}/work_product/a.pdf", content=pdf, headers=up).status_code == 200
    # Refused by name or content, with nothing left in the folders.
    for target, body, field in (
        ("reference/fake.pdf", b"just text", "not a PDF"),
        ("reference/fake.docx", b"PK\x03\x04 not a zip", "not one"),
        ("reference/binary.txt", b"a\x00b", "NUL"),
        ("reference/.hidden.txt", b"text", "ignore"),
        ("reference/notes.exe", b"text", "one of the types"),
        ("kitchen/notes.txt", b"text", "category"),
    ):
        refused = client.put(f"{DOCUMENT}/{target}", content=body, headers=up)
        assert refused.status_code == 422 and field in refused.text, (target, refused.text)
    leftovers = [p.name for p in home.agent_dir("acme").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    # The agent's state lists each file, waiting for its ingest; what is missing to train.
    detail = client.get("/v1/admin/agents/acme", headers=client.as_["ops"]).json()
    assert {(f["category"], f["filename"], f["status"]) for f in detail["files"]} == {
        ("reference", "play.txt", "waiting"),
        ("work_product", "a.pdf", "waiting"),
    }
    assert detail["missing"] == ["a document in communication/"]
    gone = client.delete(f"{DOCUMENT}/reference/play.txt", headers=up)
    assert gone.status_code == 204 and not path.exists()
    assert client.delete(f"{DOCUMENT}/reference/play.txt", headers=up).status_code == 404


def test_uploads_over_the_limit_or_without_the_scope_are_refused(client, home, monkeypatch):
    client.post("/v1/admin/agents", json={"id": "acme"}, headers=client.as_["ops"])
    monkeypatch.setenv("THUNDER_MAX_UPLOAD_BYTES", "1000")
    up = client.as_["uploader"]
    big = client.put(f"{DOCUMENT}/reference/big.txt", content=b"x" * 5000, headers=up)
    assert big.status_code == 413 and "THUNDER_MAX_UPLOAD_BYTES" in big.text

    def chunks():  # streamed without a length: refused as it passes the limit
        for _ in range(10):
            yield b"y" * 300

    streamed = client.put(f"{DOCUMENT}/reference/big.txt", content=chunks(), headers=up)
    assert streamed.status_code == 413
    assert list(home.agent_dir("acme").rglob("*.txt")) == []
    assert list(home.agent_dir("acme").rglob(".upload-*")) == []
    body = b"small"
    for name, status in (("app", 403), ("other", 403), ("ops", 403)):
        refused = client.put(f"{DOCUMENT}/reference/a.txt", content=body, headers=client.as_[name])
        assert refused.status_code == status, name
    assert client.put(f"{DOCUMENT}/reference/a.txt", content=body).status_code == 401
    missing = client.put(
        "/v1/admin/agents/nobody/documents/reference/a.txt", content=body, headers=up
    )
    assert missing.status_code == 404


def test_thunder_agents_and_upload_do_the_same_from_the_command_line(home, tmp_path):
    from click.testing import CliRunner

    from thunder_dagster.cli.main import main

    runner = CliRunner()
    made = runner.invoke(main, ["agents", "create", "desk", "--task", "chat", "--name", "Desk"])
    assert made.exit_code == 0, made.output
    good = tmp_path / "notes.txt"
    good.write_text("The cooler stays between one and four degrees.")
    fake = tmp_path / "scan.pdf"
    fake.write_bytes(b"not a pdf")
    done = runner.invoke(main, ["upload", "desk", str(good), str(fake), "--category", "reference"])
    assert done.exit_code == 1
    assert "stored reference/notes.txt" in done.output and "refused" in done.output
    assert (home.category_dir("desk", "reference") / "notes.txt").read_text() == good.read_text()
    assert not (home.category_dir("desk", "reference") / "scan.pdf").exists()
    again = runner.invoke(main, ["upload", "desk", str(good)])
    assert again.exit_code == 0 and "unchanged reference/notes.txt" in again.output
    listed = runner.invoke(main, ["agents", "list"])
    assert listed.exit_code == 0 and "desk" in listed.output and "chat" in listed.output
