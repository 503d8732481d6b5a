"""Which agents' uploads changed since the last look, and are settled enough to ingest.

A file counts once the same size and mtime were seen on two consecutive looks; only then is it
hashed, and it is hashed again only when its size or mtime change. So a look over unchanged files
costs a stat each, and the cost grows with what changed, not with the corpus.
"""

import json
import time
from dataclasses import dataclass, field

from thunder_dagster.documents.uploads import content_digest, scan_agent, sha256_file
from thunder_dagster.files import write_atomically
from thunder_dagster.home import Home

# A file whose size or mtime keeps changing for this long is left out rather than waited for.
MAX_SETTLE_SECONDS = 300.0


@dataclass(frozen=True)
class AgentUploads:
    """An agent's settled uploads: their digest, and which files are still being written."""

    agent_id: str
    digest: str
    files: int
    pending: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def settled(self) -> bool:
        return not self.pending


@dataclass
class UploadMemo:
    """What the last look saw of each file: [size, mtime_ns, sha256 or None, first seen]."""

    entries: dict[str, dict[str, list]] = field(default_factory=dict)
    changed: bool = False

    @classmethod
    def load(cls, home: Home) -> "UploadMemo":
        try:
            return cls(json.loads(home.upload_state_path.read_text()))
        except (OSError, ValueError):
            return cls()

    def save(self, home: Home) -> None:
        if self.changed:
            write_atomically(home.upload_state_path, json.dumps(self.entries).encode())
            self.changed = False


def look_at_agent(
    home: Home, agent_id: str, memo: UploadMemo, now: float | None = None
) -> AgentUploads:
    """Stat every upload of one agent; hash those that settled; never raises for one bad file."""
    now = time.time() if now is None else now
    before = memo.entries.get(agent_id, {})
    after: dict[str, list] = {}
    hashes: dict[str, str] = {}
    pending: list[str] = []
    errors: list[str] = []
    for upload in scan_agent(home.agent_dir(agent_id)):
        if upload.ignored:
            continue
        seen = before.get(upload.rel_path)
        if seen is not None and (seen[0], seen[1]) == upload.stat_key:
            sha256 = seen[2]
            if sha256 is None:
                try:
                    sha256 = sha256_file(upload.path)
                except OSError as error:
                    errors.append(f"{upload.rel_path}: {error.strerror}")
            after[upload.rel_path] = [upload.size, upload.mtime_ns, sha256, seen[3]]
            if sha256 is not None:
                hashes[upload.rel_path] = sha256
        else:
            first_seen = seen[3] if seen is not None else now
            after[upload.rel_path] = [upload.size, upload.mtime_ns, None, first_seen]
            if now - first_seen < MAX_SETTLE_SECONDS:
                pending.append(upload.rel_path)
            else:
                errors.append(f"{upload.rel_path}: still changing after {MAX_SETTLE_SECONDS:g} s")
    if after != before:
        memo.entries[agent_id] = after
        memo.changed = True
    return AgentUploads(
        agent_id=agent_id,
        digest=content_digest(hashes),
        files=len(hashes),
        pending=tuple(pending),
        errors=tuple(errors),
    )


def forget_agent(memo: UploadMemo, agent_id: str) -> None:
    if memo.entries.pop(agent_id, None) is not None:
        memo.changed = True
