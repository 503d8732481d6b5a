"""What a route depends on, as `Annotated` aliases: the serving state, the answering engine,
and the caller. A caller dependency *returns* the identity allowed a scope for the agent the
path names, so a route that takes one cannot run unchecked; routes whose agent is not in the
path check the object they act on with `Caller.reach` (a key limited to one agent never
reaches another's)."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from thunder_dagster.serving.answering import Answerer
from thunder_dagster.serving.errors import Forbidden, OverLimit, RateLimited
from thunder_dagster.serving.state import ServingState

# The query log's user_id column (feedback/schema.py); not imported, so the server starts
# without SQLAlchemy.
USER_ID_WIDTH = 128

if TYPE_CHECKING:
    from thunder_dagster.access.keys import Identity

# Declares the Bearer scheme in the API document; the check itself is KeyCache's.
BEARER = HTTPBearer(auto_error=False, description="an API key: `thunder keys create`")
OPEN_SERVER = "open-server"


def serving_state(request: Request) -> ServingState:
    return request.app.state.serving


def answerer(request: Request) -> Answerer:
    return request.app.state.answerer


State = Annotated[ServingState, Depends(serving_state)]
Engine = Annotated[Answerer, Depends(answerer)]


@dataclass(frozen=True)
class Caller:
    """Who calls: a key's identity, or None on an open server (which trusts every caller)."""

    identity: "Identity | None"
    scope: str

    @property
    def actor(self) -> str:
        return self.identity.actor if self.identity else OPEN_SERVER

    @property
    def limited(self) -> bool:
        """Whether the key reaches only some agents."""
        return self.identity is not None and self.identity.agents is not None

    def may(self, agent_id: str | None) -> bool:
        return self.identity is None or self.identity.may(self.scope, agent_id)

    def reach(self, agent_id: str | None, what: str) -> None:
        """Forbidden unless the key reaches `agent_id`, the agent of `what` it acts on (None:
        the object names no agent, which only a key for every agent reaches)."""
        if not self.limited:
            return
        if agent_id is None or not self.may(agent_id):
            owner = f"agent {agent_id!r}" if agent_id else "no agent"
            raise Forbidden(
                f"key {self.identity.key_id} ({self.identity.name}) lacks {what}, which "
                f"belongs to {owner}; it reaches {', '.join(self.identity.agents)}"
            )

    def user(self, claimed: str, field: str = "user_id") -> str:
        """Who an answer is for: the caller's claim on an open server or from a key trusted
        to name its users (prefixed with the key's id, within the query log's column);
        otherwise the key itself."""
        if self.identity is None:
            return claimed
        if self.identity.trusts_user_ids:
            user = f"{self.identity.key_id}:{claimed}"
            if len(user) > USER_ID_WIDTH:
                room = USER_ID_WIDTH - len(self.identity.key_id) - 1
                raise OverLimit(
                    field,
                    f"{field} has {len(claimed)} characters; through this key, whose id prefixes "
                    f"it in the query log, at most {room} fit: send a shorter id",
                )
            return user
        return self.identity.key_id


def _within_rate(state: ServingState, caller: str) -> None:
    wait = state.limiter.wait(caller)
    if wait:
        raise RateLimited(
            f"{caller} is over {state.limiter.per_minute} requests a minute "
            f"(THUNDER_RATE_LIMIT): retry in {wait} s",
            wait,
        )


def _caller(scope: str):
    def dependency(
        request: Request,
        state: State,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Caller:
        request.state.scope = scope
        # An open server turns keyed once a key exists: `thunder keys create` takes effect
        # within the key refresh, without a restart (this runs in FastAPI's thread pool).
        if state.settings.auth == "open" and not state.keys.keys():
            _within_rate(state, request.client.host if request.client else "unknown")
            return Caller(None, scope)
        identity = state.keys.authenticate(request)
        _within_rate(state, identity.key_id)
        request.state.actor = identity.actor
        agent_id = request.path_params.get("agent_id")
        if not identity.may(scope, agent_id):
            what = f"scope {scope!r}" + (f" for agent {agent_id!r}" if agent_id else "")
            reach = f" for {', '.join(identity.agents)}" if identity.agents else ""
            raise HTTPException(
                403,
                f"key {identity.key_id} ({identity.name}) lacks {what}; it has "
                f"{', '.join(identity.scopes)}{reach}",
            )
        return Caller(identity, scope)

    dependency.__name__ = f"{scope}_caller"
    return dependency


Generator = Annotated[Caller, Depends(_caller("generate"))]
Rater = Annotated[Caller, Depends(_caller("feedback"))]
Admin = Annotated[Caller, Depends(_caller("admin"))]
Uploader = Annotated[Caller, Depends(_caller("upload"))]
