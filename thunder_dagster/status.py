"""What `thunder status` shows of each agent, read from THUNDER_HOME's files: documents, the
dataset version, the retrieval index served, the champion and challenger. The CLI adds what
only the Dagster instance knows (the last training run, the latest trigger decision)."""

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
    documents: dict[str, int] = field(default_factory=dict)  # status -> count
    dataset_version: str | None = None
    dataset_rows: int | None = None
    index: str | None = None  # "<version> (<chunks> chunks)" of the index the server searches
    champion: str | None = None
    challenger: str | None = None
    last_training: str | None = None  # "<time> <status>", from the instance
    pending_trigger: str | None = None  # "<rule> (<day>)", from the instance
    problems: list[str] = field(default_factory=list)

    def row(self) -> list[str]:
        documents = ", ".join(f"{n} {s}" for s, n in self.documents.items() if n) or "-"
        dataset = (
            f"{self.dataset_version[:12]} ({self.dataset_rows} chunks)"
            if self.dataset_version
            else "-"
        )
        return [
            self.agent_id,
            documents,
            dataset,
            self.index or "-",
            self.champion or "-",
            self.challenger or "-",
            self.last_training or "-",
            self.pending_trigger or "-",
        ]


HEADERS = ["agent", "documents", "dataset", "index", "champion", "challenger", "last training"]
HEADERS += ["trigger"]


def agent_status(home: Home, agent_id: str) -> AgentStatus:
    """The file-based part of an agent's state; unreadable files are listed, not raised."""
    status = AgentStatus(agent_id)
    report_path = home.ingest_report_path(agent_id)
    try:
        report = read_ingest_report(report_path)
        if report is not None:
            status.documents = report.summary
    except (OSError, ValueError, KeyError, TypeError) as error:
        status.problems.append(f"{report_path}: unreadable ({error})")
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
    return status


def render_table(rows: list[list[str]], headers: list[str] = HEADERS) -> str:
    """A plain aligned table for a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
