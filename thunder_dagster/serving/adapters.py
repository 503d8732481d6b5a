"""The adapters a server answers chat and instruction agents with: per agent and role, the
adapter its pointer under deployments/<agent>/adapter/ names (adapters/releases.py), read on
the first answer after the pointer changed (a stat per answer; about 40 ms to load) and kept as
the adapted graph's inputs. An adapter that does not load (a changed or half-copied file, a
pointer to a pruned version, a shape the base does not have) is refused with the reason, shown
in /healthz, while the one in service keeps answering; without one the bare base answers.
"""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.adapters.releases import adapter_dir
from thunder_dagster.deployments.pointers import pointer_path, read_pointer
from thunder_dagster.serving.models import variant_for
from thunder_dagster.serving.watching import public_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedAdapter:
    version: str
    feeds: dict[str, np.ndarray]  # the adapted graph's adapter inputs


class AgentAdapters:
    def __init__(self, deployments_root: Path):
        self.root = deployments_root
        self._served: dict[tuple[str, str], tuple[tuple | None, ServedAdapter | None]] = {}
        self.refused: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, agent_id: str, role: str, spec) -> ServedAdapter | None:
        """The role's adapter for the agent, on the base of `spec`; None without one."""
        folder = adapter_dir(self.root / agent_id)
        try:
            status = pointer_path(folder, role).stat()
            signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        except OSError:
            signature = None
        key = (agent_id, role)
        cached = self._served.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        with self._lock:
            cached = self._served.get(key)
            if cached is not None and cached[0] == signature:
                return cached[1]
            return self._load(key, folder, signature, cached[1] if cached else None, spec)

    def _load(self, key, folder: Path, signature, served, spec) -> ServedAdapter | None:
        from thunder_dagster.adapters.files import Adapter, graph_feeds

        if signature is None:
            self.refused.pop(key, None)
            self._served[key] = (None, None)
            return None
        try:
            deployment = read_pointer(folder, key[1])
            if deployment is None:
                raise FileNotFoundError("the pointer went away while it was read")
            adapter = Adapter.load(Path(deployment.model_dir), spec)
            served = ServedAdapter(deployment.version, graph_feeds(adapter, spec))
            self.refused.pop(key, None)
        except Exception as error:
            # Whatever the file's trouble, the adapter in service (or the base) keeps answering.
            log.warning("agent %s %s adapter refused: %s", *key, error)
            self.refused[key] = public_reason(error)
        self._served[key] = (signature, served)
        return served

    def for_user(
        self, agent_id: str, user_id: str, spec, share
    ) -> tuple[str, ServedAdapter | None]:
        """(variant, adapter) for a user: the challenger for its A/B share (`share(version)`)
        while there is one, else the champion (None: the bare base)."""
        champion = self.get(agent_id, "champion", spec)
        challenger = self.get(agent_id, "challenger", spec)
        if challenger is not None and champion is not None:
            if variant_for(agent_id, user_id, share(challenger.version)) == "challenger":
                return "challenger", challenger
        return "champion", champion

    def problems(self) -> list[dict]:
        return [
            {"agent": agent, "reason": f"{role} adapter refused: {why}"}
            for (agent, role), why in sorted(self.refused.items())
        ]
