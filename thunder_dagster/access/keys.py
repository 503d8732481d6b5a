"""API keys and the audit log, in the query-log store.

A key reads `thd_<id>_<secret>`: the id names the row, the secret (32 random bytes) is shown
once, when the key is made, and only its SHA-256 is kept (a random secret of that length
needs no slow hash). Scopes: `generate` (generate and search), `feedback`, `admin`; a key
may be limited to some agents.
"""

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from thunder_dagster.feedback.schema import ApiKeyRow, AuditRow
from thunder_dagster.times import utc_now

# metrics: /metrics and the agents /healthz names, on a server with keys (Prometheus's key);
# upload: an agent's documents (PUT, GET, DELETE .../documents/...).
SCOPES = ("generate", "feedback", "admin", "metrics", "upload")
TOKEN = re.compile(r"thd_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class AccessError(ValueError):
    """A key that cannot be made or found: the message says which and why."""


@dataclass(frozen=True)
class Identity:
    """Who a request is: the key that authenticated it."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    agents: tuple[str, ...] | None  # None: every agent
    trusts_user_ids: bool

    def may(self, scope: str, agent_id: str | None = None) -> bool:
        if scope not in self.scopes:
            return False
        return agent_id is None or self.agents is None or agent_id in self.agents

    @property
    def actor(self) -> str:
        return f"key:{self.key_id} ({self.name})"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    agents: tuple[str, ...] | None
    trusts_user_ids: bool
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    request_id: str
    outcome: str
    detail: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        row.id,
        row.name,
        tuple(row.scopes),
        tuple(row.agents) if row.agents is not None else None,
        row.trusts_user_ids,
        row.created_at,
        row.revoked_at,
    )


class KeyStore:
    def __init__(self, engine: Engine):
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def create(
        self,
        name: str,
        scopes: list[str],
        agents: list[str] | None = None,
        trusts_user_ids: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key and its token (shown once: only its hash is kept)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if not scopes or unknown:
            raise AccessError(
                f"scopes {', '.join(unknown) or '(none)'}: give one or more of {', '.join(SCOPES)}"
            )
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=key_id,
            name=name,
            secret_sha256=_digest(secret),
            scopes=sorted(set(scopes)),
            agents=sorted(set(agents)) if agents else None,
            trusts_user_ids=trusts_user_ids,
            created_at=utc_now(),
        )
        with self.sessions.begin() as session:
            session.add(row)
        return _key(row), f"thd_{key_id}_{secret}"

    def listed(self, include_revoked: bool = True) -> list[ApiKey]:
        with self.sessions() as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
            if not include_revoked:
                query = query.where(ApiKeyRow.revoked_at.is_(None))
            return [_key(row) for row in session.scalars(query)]

    def revoke(self, key_id: str) -> ApiKey:
        with self.sessions.begin() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise AccessError(f"no key {key_id!r}: `thunder keys list` shows the keys")
            if row.revoked_at is None:
                row.revoked_at = utc_now()
            return _key(row)

    def active(self) -> dict[str, tuple[str, Identity]]:
        """Every key not revoked: id -> (secret digest, identity), for a server's cache."""
        with self.sessions() as session:
            rows = session.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
            return {
                row.id: (
                    row.secret_sha256,
                    Identity(
                        row.id,
                        row.name,
                        tuple(row.scopes),
                        tuple(row.agents) if row.agents is not None else None,
                        row.trusts_user_ids,
                    ),
                )
                for row in rows
            }

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        request_id: str,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        with self.sessions.begin() as session:
            session.add(
                AuditRow(
                    at=utc_now(),
                    actor=actor,
                    action=action,
                    target=target,
                    request_id=request_id,
                    outcome=outcome,
                    detail=detail,
                )
            )

    def audit(
        self, limit: int = 100, since: datetime | None = None, targets: list[str] | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` entries (after `since`; on one of `targets`, if given), newest
        first."""
        with self.sessions() as session:
            query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if since is not None:
                query = query.where(AuditRow.at > since)
            if targets is not None:
                query = query.where(AuditRow.target.in_(targets))
            return [
                AuditEntry(
                    r.id, r.at, r.actor, r.action, r.target, r.request_id, r.outcome, r.detail
                )
                for r in session.scalars(query)
            ]


def authenticate(token: str, keys: dict[str, tuple[str, Identity]]) -> Identity | None:
    """The identity of a well-formed token whose key is active and whose secret matches."""
    match = TOKEN.fullmatch(token.strip())
    if match is None:
        return None
    found = keys.get(match.group(1))
    if found is None:
        return None
    digest, identity = found
    return identity if hmac.compare_digest(digest, _digest(match.group(2))) else None
