"""What the alert rules judge, read from THUNDER_HOME's files and the query-log store. Each
reader reports trouble instead of raising: a stray or torn file is one problem, listed, and
the other observations still count."""

import csv
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from thunder_dagster.deployments.pointers import history, read_pointer
from thunder_dagster.documents.datasets import latest_dataset
from thunder_dagster.home import Home
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.monitoring.rules import AbEvent, Versions
from thunder_dagster.retrieval.vectors import VectorStore, text_hash

SPOOL_PATTERN = "queries-*.jsonl"  # serving/spool.py's files


@dataclass
class FileObservations:
    free_disk_bytes: int | None = None
    spool_rows: int = 0
    embedding_backlog: dict[str, int] = field(default_factory=dict)
    versions: dict[str, Versions] = field(default_factory=dict)
    ab_events: list[AbEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def spool_rows(spool_dir: Path) -> int:
    """Lines waiting in the server processes' spool files (answers and ratings)."""
    total = 0
    for path in sorted(spool_dir.glob(SPOOL_PATTERN)) if spool_dir.is_dir() else []:
        with open(path, "rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def embedding_backlog(home: Home, agent_id: str) -> int | None:
    """Chunks of the agent's dataset without a vector in its newest vectors folder (all of
    them when nothing was embedded yet); None without a dataset."""
    dataset = latest_dataset(home.processed_dir(agent_id))
    if dataset is None:
        return None
    csv.field_size_limit(sys.maxsize)
    with open(dataset.path, newline="", encoding="utf-8") as handle:
        wanted = {(row["chunk_id"], text_hash(row["text"])) for row in csv.DictReader(handle)}
    vectors_root = home.retrieval_dir(agent_id) / "vectors"
    folders = [p for p in vectors_root.iterdir() if p.is_dir()] if vectors_root.is_dir() else []
    if not folders:
        return len(wanted)
    store = VectorStore(max(folders, key=lambda path: path.stat().st_mtime))
    embedded = set()
    for document_id in store.documents():
        try:
            stored = store.read(document_id)
        except (OSError, ValueError, KeyError):
            continue  # unreadable: its chunks count as waiting
        if stored is not None:
            embedded.update(zip(stored[0], stored[1], strict=True))
    return len(wanted - embedded)


def _loss(deployment) -> float | None:
    if deployment is None:
        return None
    card = ModelCard.read(deployment.model_dir)
    split, loss = card.reported_loss()
    return loss if split == "test" else None


def agent_versions(home: Home, agent_id: str) -> Versions:
    """The agent's champion and challenger; with both, their scores on the same held-out data
    (recorded when the challenger was released: test losses, or classifiers' macro F1), since
    each card's own loss is on a text of its own."""
    from thunder_dagster.deployments.gate import PairScores

    deployments = home.deployments_dir(agent_id)
    champion = read_pointer(deployments, "champion")
    challenger = read_pointer(deployments, "challenger")
    if champion is not None and challenger is not None:
        pair = PairScores.read(deployments, champion.version, challenger.version)
        if pair is None:
            return Versions(champion.version, None, challenger.version, None)
        return Versions(
            champion.version,
            pair.champion_score,
            challenger.version,
            pair.challenger_score,
            pair.scored_by.label,
            pair.scored_by.higher_is_better,
        )
    return Versions(
        champion.version if champion else None,
        _loss(champion),
        challenger.version if challenger else None,
        None,
    )


def ab_events(home: Home, agent_id: str) -> list[AbEvent]:
    """The agent's challenger promotions and retirements, from its deployment history."""
    return [
        AbEvent(
            agent_id, str(event["version"]), event["action"], datetime.fromisoformat(event["at"])
        )
        for event in history(home.deployments_dir(agent_id))
        if event.get("action") in ("promote", "retire") and event.get("role") == "challenger"
    ]


def observe_files(home: Home, spool_dir: Path | None = None) -> FileObservations:
    found = FileObservations()
    try:
        found.free_disk_bytes = shutil.disk_usage(home.root).free
    except OSError as error:
        found.problems.append(f"free disk under {home.root}: {error}")
    spool_dir = spool_dir or home.root / "spool"
    try:
        found.spool_rows = spool_rows(spool_dir)
    except OSError as error:
        found.problems.append(f"spool {spool_dir}: {error}")
    for agent_id in home.list_agents():
        try:
            backlog = embedding_backlog(home, agent_id)
            if backlog is not None:
                found.embedding_backlog[agent_id] = backlog
        except (OSError, ValueError, KeyError, TypeError, csv.Error) as error:
            found.problems.append(f"{agent_id}: embedding backlog unknown ({error})")
        try:
            found.versions[agent_id] = agent_versions(home, agent_id)
            found.ab_events += ab_events(home, agent_id)
        except (OSError, ValueError, KeyError, TypeError) as error:
            found.problems.append(f"{agent_id}: deployed versions unreadable ({error})")
    return found


def latency_p95(store, now: datetime, minutes: float) -> dict[str, tuple[float, int]]:
    """Each agent's p95 answer latency (ms) and answer count over the last `minutes`."""
    import numpy as np

    by_agent = store.latencies_since(now - timedelta(minutes=minutes))
    return {
        agent: (float(np.percentile(values, 95)), len(values))
        for agent, values in sorted(by_agent.items())
        if values
    }
