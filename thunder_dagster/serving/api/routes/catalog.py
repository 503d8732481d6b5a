"""The admin API's catalog: what this server serves, an agent's released versions, and the
audit log."""

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query

from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.serving.api.audit import Trail, audited
from thunder_dagster.serving.api.deps import Admin, State
from thunder_dagster.serving.api.problems import STORE_DOWN, described
from thunder_dagster.serving.api.schemas import AgentDeployment, AuditItem, RoleStatus, VersionItem
from thunder_dagster.serving.errors import UnknownAgent

router = APIRouter()
ROLES = ("champion", "challenger", "teacher")


@router.get(
    "/v1/admin/deployments",
    response_model=list[AgentDeployment],
    responses=described({503: STORE_DOWN}),
)
def deployments(
    trail: Annotated[Trail, audited("deployments.read", "server")], who: Admin, state: State
) -> list[AgentDeployment]:
    """What this server serves: per agent and role, the version, since when, its test
    loss and the checks it passed at export; and each candidate it refused, with why."""
    found = []
    for agent_id, models in sorted(state.pool.agents.items()):
        if not who.may(agent_id):
            continue
        roles = {role: _role(getattr(models, role)) for role in ROLES}
        found.append(AgentDeployment(agent_id=agent_id, roles=roles, refused=models.refused))
    for agent_id, marker in sorted(state.pool.undeployed.items()):
        if who.may(agent_id):
            found.append(
                AgentDeployment(
                    agent_id=agent_id,
                    roles=dict.fromkeys(ROLES),
                    refused={},
                    undeployed=f"since {marker.at} by {marker.by}: {marker.reason}",
                )
            )
    trail.detail = f"{len(found)} agents"
    return found


def _role(model) -> RoleStatus | None:
    if model is None:
        return None
    split, loss = model.card.reported_loss()
    return RoleStatus(
        version=model.deployment.version,
        family=model.deployment.family,
        deployed_at=model.deployment.deployed_at,
        test_loss=loss if split == "test" else None,
        checks=dict(model.card.onnx.checks) if model.card.onnx else {},
    )


@router.get(
    "/v1/admin/agents/{agent_id}/versions",
    response_model=list[VersionItem],
    responses=described({404: "no such agent", 503: STORE_DOWN}),
)
def versions(
    agent_id: str,
    trail: Annotated[Trail, audited("versions.read")],
    _who: Admin,
    state: State,
) -> list[VersionItem]:
    """The agent's released versions, newest first: family, hyperparameters, test loss,
    parent, what made it, the roles pointing at it now and when it was last deployed."""
    from thunder_dagster.deployments.catalog import agent_versions

    home = state.settings.home
    if not AGENT_ID_PATTERN.fullmatch(agent_id):
        raise UnknownAgent(f"unknown agent {agent_id!r}: nothing was released for it")
    deployments_dir, models_dir = home.deployments_dir(agent_id), home.models_dir(agent_id)
    if not (deployments_dir.is_dir() or models_dir.is_dir()):
        raise UnknownAgent(f"unknown agent {agent_id!r}: nothing was released for it")
    entries = agent_versions(models_dir, deployments_dir)
    trail.detail = f"{len(entries)}"
    return [
        VersionItem(**(dataclasses.asdict(entry) | {"roles": list(entry.roles)}))
        for entry in entries
    ]


@router.get(
    "/v1/admin/audit", response_model=list[AuditItem], responses=described({503: STORE_DOWN})
)
def audit(
    trail: Annotated[Trail, audited("audit.read", "audit_log")],
    who: Admin,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="newest entries to return")] = 100,
) -> list[AuditItem]:
    """The audit log, newest first (scope admin); a key limited to some agents reads only
    the entries on those agents. Reading it is recorded too."""
    from thunder_dagster.access.keys import KeyStore

    targets = [f"agent:{agent}" for agent in who.identity.agents] if who.limited else None
    entries = KeyStore(state.open_store().engine).audit(limit, targets=targets)
    trail.detail = f"returned {len(entries)}"
    return [AuditItem(**(dataclasses.asdict(e) | {"at": e.at.isoformat()})) for e in entries]
