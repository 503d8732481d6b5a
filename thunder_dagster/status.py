"""What `thunder status` shows of each agent, read from THUNDER_HOME's files: its task,
documents, the data its model learns from (the chunked dataset of a generating agent, the
labelled examples of a classifier), the retrieval index served, and what answers (champion and
challenger; a chat or instruction agent's instruct base). The CLI adds what only the Dagster
instance knows (the last training run, the latest trigger decision)."""

import json
from dataclasses import dataclass, field

from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.documents.datasets import latest_dataset
from thunder_dagster.documents.ingest import read_ingest_report
from thunder_dagster.home import Home
from thunder_dagster.retrieval.index import MANIFEST, IndexManifest, pointed_version


@dataclass
class AgentStatus:
    agent_id: str
    task: str | None = None  # None: agent.json unreadable (a problem says why)
    documents: dict[str, int] = field(default_factory=dict)  # status -> count
    dataset_version: str | None = None
    dataset_rows: int | None = None
    dataset_unit: str = "chunks"  # what its rows are: chunks, or labelled examples
    index: str | None = None  # "<version> (<chunks> chunks)" of the index the server searches
    champion: str | None = None
    challenger: str | None = None
    last_training: str | None = None  # "<time> <status>", from the instance
    pending_trigger: str | None = None  # "<rule> (<day>)", from the instance
    problems: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        documents = ", ".join(f"{n} {s}" for s, n in self.documents.items() if n) or "-"
        dataset = (
            f"{self.dataset_version[:12]} ({self.dataset_rows} {self.dataset_unit})"
            if self.dataset_version
            else "-"
        )
        return [
            self.agent_id,
            self.task or "?",
            documents,
            dataset,
            self.index or "-",
            self.champion or "-",
            self.challenger or "-",
            self.last_training or "-",
            self.pending_trigger or "-",
        ]


HEADERS = ["agent", "task", "documents", "dataset", "index", "champion", "challenger"]
HEADERS += ["last training", "trigger"]


def agent_status(home: Home, agent_id: str) -> AgentStatus:
    """The file-based part of an agent's state; unreadable files are listed, not raised."""
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.tasks.registry import task_kind

    status = AgentStatus(agent_id)
    try:
        status.task = read_task(home.agent_dir(agent_id))
    except AgentSettingsError as error:
        status.problems.append(str(error))
    kind = task_kind(status.task) if status.task else None
    report_path = home.ingest_report_path(agent_id)
    try:
        report = read_ingest_report(report_path)
        if report is not None:
            status.documents = report.summary
    except (OSError, ValueError, KeyError, TypeError) as error:
        status.problems.append(f"{report_path}: unreadable ({error})")
    if kind is not None and kind.labelled:
        _labelled_examples(home, status)
    else:
        try:
            dataset = latest_dataset(home.processed_dir(agent_id))
            if dataset is not None:
                status.dataset_version, status.dataset_rows = dataset.version, dataset.rows
        except (ValueError, TypeError) as error:
            status.problems.append(f"{home.processed_dir(agent_id)}: dataset unreadable ({error})")
    retrieval = home.retrieval_dir(agent_id)
    version = pointed_version(retrieval)
    if version is not None:
        manifest = retrieval / "indexes" / version / MANIFEST
        try:
            chunks = IndexManifest(**json.loads(manifest.read_text())).chunks
            status.index = f"{version[:8]} ({chunks} chunks)"
        except (OSError, ValueError, KeyError, TypeError) as error:
            status.problems.append(f"{manifest}: index unreadable ({error})")
    deployments = home.deployments_dir(agent_id)
    for role in ("champion", "challenger"):
        try:
            pointer = read_pointer(deployments, role)
        except (ValueError, TypeError) as error:
            status.problems.append(f"{deployments}: {role} pointer unreadable ({error})")
            continue
        if pointer is not None:
            setattr(status, role, f"{pointer.version} ({pointer.family})")
    if kind is not None and kind.model == "instruct" and status.champion is None:
        from thunder_dagster.instruct.base import FILE_NAME, FILE_SHA256

        # What the server logs its answers under (serving/conversations.py).
        status.champion = f"base-{FILE_SHA256[:12]} ({FILE_NAME.split('.')[0]})"
    return status


def _labelled_examples(home: Home, status: AgentStatus) -> None:
    """A classifier's data: its newest labelled examples (uploads and users' labels)."""
    from thunder_dagster.documents.labelled import latest_labelled

    manifest = latest_labelled(home.processed_dir(status.agent_id))
    if manifest is None:
        return
    try:
        status.dataset_version, status.dataset_rows = str(manifest["version"]), manifest["rows"]
        status.dataset_unit = "labelled examples"
    except (KeyError, TypeError) as error:
        status.problems.append(
            f"{home.processed_dir(status.agent_id)}: labelled examples unreadable ({error})"
        )


def render_table(rows: list[list[str]], headers: list[str] = HEADERS) -> str:
    """A plain aligned table for a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
