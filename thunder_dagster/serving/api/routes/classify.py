"""POST /v1/agents/{agent_id}/classify: a classification or sentiment agent's label."""

from fastapi import APIRouter

from thunder_dagster.serving.api.deps import Engine, Generator
from thunder_dagster.serving.api.problems import described
from thunder_dagster.serving.api.schemas import ClassifyRequest, ClassifyResponse

router = APIRouter()


@router.post(
    "/v1/agents/{agent_id}/classify",
    response_model=ClassifyResponse,
    responses=described(
        {404: "no model deployed for the agent", 409: "the agent is not a classifier"},
        body=True,
    ),
)
async def classify_text(
    agent_id: str, request: ClassifyRequest, who: Generator, engine: Engine
) -> ClassifyResponse:
    """The label a classification or sentiment agent gives the text (its champion, or for
    the A/B share of users the challenger under test), with every label's probability, and
    the query id that rates it or corrects its label."""
    found = await engine.state.queue.run(
        engine.classify, agent_id, request.text, who.user(request.user_id)
    )
    return ClassifyResponse(
        label=found.label,
        probabilities=found.probabilities,
        model_version=found.model_version,
        task=found.task,
        query_id=found.query_id,
        variant=found.variant,
    )
