"""The audit trail: a route that changes or reads admin state declares `audited(action)`, and
what the request ended with is recorded, whatever the route did: ok (2xx), denied (401, 403)
or failed (anything else, with the problem's detail). Refused requests to every keyed route
are recorded too, each client's within a budget a minute, so a client hammering with bad keys
costs a bounded number of writes (the rest are counted in /metrics)."""

import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from thunder_dagster.serving.api.deps import OPEN_SERVER, State
from thunder_dagster.serving.state import ServingState

DENIALS_PER_MINUTE = 20  # audited refusals a client may cause a minute


@dataclass
class Trail:
    """One audited request: its action and target, and what the route found worth saying."""

    action: str
    target: str
    detail: str | None = None


def audited(action: str, target: str = "agent:{agent_id}"):
    """A dependency that records the request as `action` on `target` (formatted with the path's
    parameters). It needs the store: an admin action that cannot be recorded is not taken."""

    def dependency(request: Request, state: State) -> Trail:
        state.open_store()
        trail = Trail(action, target.format(**request.path_params))
        request.state.trail = trail
        return trail

    return Depends(dependency)


class DenialBudget:
    """How many refusals each client may still have audited this minute."""

    def __init__(self, per_minute: int = DENIALS_PER_MINUTE):
        self.per_minute = per_minute
        self._spent: dict[str, int] = defaultdict(int)
        self._minute = 0
        self._lock = threading.Lock()

    def take(self, client: str) -> bool:
        with self._lock:
            minute = int(time.monotonic() // 60)
            if minute != self._minute:
                self._spent.clear()
                self._minute = minute
            self._spent[client] += 1
            return self._spent[client] <= self.per_minute


# The audit log's request_id column holds 64 characters; printable ASCII keeps it one line.
REQUEST_ID_LENGTH = 64
REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{REQUEST_ID_LENGTH}}}")


def request_id_problem(request: Request) -> str | None:
    """Why the request's X-Request-Id cannot be recorded, or None: checked before the route
    acts, so that no action happens that its audit row could not follow."""
    given = request.headers.get("x-request-id")
    if given is None or REQUEST_ID.fullmatch(given):
        return None
    return (
        f"X-Request-Id must be 1 to {REQUEST_ID_LENGTH} printable ASCII characters without "
        f"spaces (got {len(given)} characters): send a shorter id, or none and the server "
        "makes one"
    )


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    return "denied" if status in (401, 403) else "failed"


async def record(request: Request, status: int, state: ServingState, budget: DenialBudget) -> None:
    """Write the audit row for a request that ended with `status`, if it is one to record."""
    trail: Trail | None = getattr(request.state, "trail", None)
    outcome = _outcome(status)
    scope = getattr(request.state, "scope", None)
    if trail is None and not (outcome == "denied" and scope is not None):
        return
    if outcome == "denied":
        client = request.client.host if request.client else "unknown"
        if not budget.take(client):
            state.metrics.audit_dropped.inc()
            return
    if trail is None:
        agent = request.path_params.get("agent_id")
        trail = Trail(f"{scope}.{request.method.lower()}", f"agent:{agent}" if agent else "server")
    anonymous = OPEN_SERVER if state.settings.auth == "open" else "anonymous"
    actor = getattr(request.state, "actor", None) or anonymous
    detail = trail.detail if outcome == "ok" else getattr(request.state, "problem", None)
    request_id = request.headers.get("x-request-id", "") or uuid.uuid4().hex
    store = state.writer.store()
    if store is None:
        return

    def write() -> None:
        from thunder_dagster.access.keys import KeyStore

        KeyStore(store.engine).record(
            actor, trail.action, trail.target, request_id, outcome, detail
        )

    try:
        await run_in_threadpool(write)
    except Exception:  # the store went down after the action: the answer still stands
        state.metrics.audit_dropped.inc()
