"""Agents and their documents over HTTP (issue 30): create and read agents (scope admin), and
upload, list and remove their documents (scope upload). An upload streams to a temporary file
under THUNDER_MAX_UPLOAD_BYTES, is checked by its content and renamed into the agent's folder,
where the upload sensor ingests it as any file dropped there. The server must have the home
writable for these routes (on Kubernetes the model server's is read-only: upload through a
server that mounts it writable, or `thunder upload` in the code-location pod)."""

import json
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from thunder_dagster import settings
from thunder_dagster.home import CATEGORIES
from thunder_dagster.serving.api.audit import Trail, audited
from thunder_dagster.serving.api.deps import Admin, State, Uploader
from thunder_dagster.serving.api.problems import described
from thunder_dagster.serving.errors import Conflict, OverLimit, TooLarge, UnknownAgent
from thunder_dagster.tasks.registry import TASKS

router = APIRouter()
AGENT = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class NewAgent(BaseModel):
    model_config = ConfigDict(strict=True)

    id: str = Field(pattern=AGENT, description="lowercase letters, digits, - and _")
    task: Literal[TASKS] = "generation"  # type: ignore[valid-type]
    display_name: str | None = Field(default=None, max_length=120, pattern=r"^[^\x00]*$")


class AgentSummary(BaseModel):
    id: str
    display_name: str | None
    task: str | None
    documents: dict[str, int] = Field(description="files per ingest status")
    champion: str | None
    challenger: str | None


class DocumentState(BaseModel):
    category: str
    filename: str
    bytes: int
    status: str = Field(
        description="ok, rejected, skipped, empty, labelled; waiting: not yet ingested"
    )
    reason: str | None = None


class AgentDetail(AgentSummary):
    files: list[DocumentState]
    dataset_version: str | None
    index: str | None
    last_training: str | None
    missing: list[str] = Field(description="what the agent lacks before it can be trained")
    problems: list[str]


class Stored(BaseModel):
    agent_id: str
    category: str
    filename: str
    sha256: str
    bytes: int
    unchanged: bool = Field(description="the same bytes were there already: nothing changed")
    ingest: str = Field(description="what happens next")


def _home(state):
    return state.settings.home


def _settings_of(home, agent_id: str) -> dict:
    from thunder_dagster.tasks.agents import settings_path

    try:
        data = json.loads(settings_path(home.agent_dir(agent_id)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _summary(home, agent_id: str, status) -> dict:
    return {
        "id": agent_id,
        "display_name": _settings_of(home, agent_id).get("display_name"),
        "task": status.task,
        "documents": {name: count for name, count in status.documents.items() if count},
        "champion": status.champion,
        "challenger": status.challenger,
    }


@router.post(
    "/v1/admin/agents",
    status_code=201,
    response_model=AgentSummary,
    responses=described({409: "an agent with this id exists"}, body=True),
)
def create_agent(
    body: NewAgent,
    trail: Annotated[Trail, audited("agent.create", "server")],
    who: Admin,
    state: State,
) -> AgentSummary:
    """A new agent: its folders and its agent.json (task, display name, who made it, when)."""
    from thunder_dagster.status import agent_status
    from thunder_dagster.tasks.agents import AgentExistsError
    from thunder_dagster.tasks.agents import create_agent as create

    who.reach(body.id, f"agent {body.id!r}")
    home = _home(state)
    try:
        create(home, body.id, body.task, body.display_name, who.actor)
    except AgentExistsError as error:
        raise Conflict(str(error)) from None
    trail.detail = f"task {body.task}"
    return AgentSummary(**_summary(home, body.id, agent_status(home, body.id)))


@router.get("/v1/admin/agents", response_model=list[AgentSummary], responses=described({}))
def list_agents(who: Admin, state: State) -> list[AgentSummary]:
    """Every agent the key reaches, with its task, documents and what serves it."""
    from thunder_dagster.status import agent_status

    home = _home(state)
    return [
        AgentSummary(**_summary(home, agent_id, agent_status(home, agent_id)))
        for agent_id in home.list_agents()
        if who.may(agent_id)
    ]


@router.get(
    "/v1/admin/agents/{agent_id}",
    response_model=AgentDetail,
    responses=described({404: "no such agent"}),
)
def agent_detail(agent_id: str, who: Admin, state: State) -> AgentDetail:
    """The agent's state: each file and its ingest status (with the reason of a refusal), the
    dataset and index, what serves it, its last training, and what it lacks to be trained."""
    from thunder_dagster.status import agent_status

    home = _home(state)
    if not re.fullmatch(AGENT, agent_id) or not home.agent_dir(agent_id).is_dir():
        raise UnknownAgent(f"no agent {agent_id!r}: POST /v1/admin/agents makes one")
    status = agent_status(home, agent_id)
    files = _files(home, agent_id)
    missing = [
        f"a document in {category}/"
        for category in CATEGORIES
        if status.task == "generation" and not any(f.category == category for f in files)
    ]
    return AgentDetail(
        **_summary(home, agent_id, status),
        files=files,
        dataset_version=status.dataset_version,
        index=status.index,
        last_training=status.last_training,
        missing=missing,
        problems=status.problems,
    )


def _files(home, agent_id: str) -> list[DocumentState]:
    """Every upload on disk with its status in the last ingest report (waiting: not in it)."""
    from thunder_dagster.documents.uploads import scan_agent

    try:
        report = json.loads(home.ingest_report_path(agent_id).read_text(encoding="utf-8"))
        ingested = {entry["path"]: entry for entry in report.get("files", [])}
    except (OSError, ValueError, AttributeError):
        ingested = {}
    found = []
    for upload in scan_agent(home.agent_dir(agent_id)):
        entry = ingested.get(upload.rel_path, {})
        found.append(
            DocumentState(
                category=upload.category,
                filename=upload.filename,
                bytes=upload.size,
                status="ignored" if upload.ignored else entry.get("status", "waiting"),
                reason=upload.ignored or entry.get("reason"),
            )
        )
    return found


DocumentPath = Annotated[str, Path(pattern=r"^[^/\x00]{1,200}$")]


@router.put(
    "/v1/admin/agents/{agent_id}/documents/{category}/{filename}",
    response_model=Stored,
    # 422 (FastAPI's validation answer): a name or content the agent cannot take.
    responses=described({404: "no such agent", 413: "over THUNDER_MAX_UPLOAD_BYTES"}),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the file's bytes: txt, pdf, docx, md, html, or csv and jsonl",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def upload_document(
    agent_id: str,
    category: Literal[CATEGORIES],  # type: ignore[valid-type]
    filename: DocumentPath,
    request: Request,
    who: Uploader,
    state: State,
) -> Stored:
    """Store the body as the agent's file (streamed, checked by its content, written
    atomically); the upload sensor ingests it within seconds."""
    from thunder_dagster.documents.receiving import NoSuchAgent, Receiving, UploadRefused
    from thunder_dagster.documents.uploads import max_upload_bytes

    home = _home(state)
    try:
        receiving = await run_in_threadpool(
            Receiving, home, agent_id, category, filename, max_upload_bytes()
        )
        async for chunk in request.stream():
            await run_in_threadpool(receiving.write, chunk)
        received = await run_in_threadpool(receiving.finish)
    except NoSuchAgent as error:
        raise UnknownAgent(f"{error}: POST /v1/admin/agents") from None
    except UploadRefused as error:
        if error.status == 413:
            raise TooLarge(str(error)) from None
        raise OverLimit(error.field, str(error)) from None
    ingest = (
        "unchanged: nothing to ingest"
        if received.unchanged
        else f"the upload sensor starts an ingest run of {agent_id} within about "
        f"{settings.SENSOR_INTERVAL.value()} s (THUNDER_SENSOR_INTERVAL); GET "
        f"/v1/admin/agents/{agent_id} shows its progress"
    )
    return Stored(**received.__dict__, ingest=ingest)


@router.delete(
    "/v1/admin/agents/{agent_id}/documents/{category}/{filename}",
    status_code=204,
    responses=described({404: "no such agent or file"}),
)
def delete_document(
    agent_id: str,
    category: Literal[CATEGORIES],  # type: ignore[valid-type]
    filename: DocumentPath,
    who: Uploader,
    state: State,
) -> None:
    """Remove the agent's file; the upload sensor sees it gone and ingests again."""
    from thunder_dagster.documents.receiving import NoSuchAgent, UploadRefused, remove

    try:
        removed = remove(_home(state), agent_id, category, filename)
    except NoSuchAgent as error:
        raise UnknownAgent(str(error)) from None
    except UploadRefused as error:
        raise OverLimit(error.field, str(error)) from None
    if not removed:
        raise UnknownAgent(f"agent {agent_id!r} has no {category}/{filename}")
