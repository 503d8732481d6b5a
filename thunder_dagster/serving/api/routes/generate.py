"""POST /v1/agents/{agent_id}/generate: an answer from the agent's model, through the engine."""

from fastapi import APIRouter

from thunder_dagster.serving.answering import Answer, Question
from thunder_dagster.serving.api.deps import Engine, Generator
from thunder_dagster.serving.api.problems import described
from thunder_dagster.serving.api.schemas import GenerateRequest, GenerateResponse, Source

router = APIRouter()


@router.post(
    "/v1/agents/{agent_id}/generate",
    response_model=GenerateResponse,
    responses=described(
        {
            404: "no model deployed for the agent",
            409: "the agent is a classifier: use classify",
        },
        body=True,
    ),
)
async def generate_text(
    agent_id: str, request: GenerateRequest, who: Generator, engine: Engine
) -> GenerateResponse:
    """The agent's answer to the prompt: from the champion, or the challenger for the A/B
    share of users; from the teacher when the answer is unsure; grounded in the agent's
    passages when asked."""
    question = Question(
        prompt=request.prompt,
        user_id=who.user(request.user_id),
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        grounded=request.grounding == "retrieved",
        best_of=request.best_of,
    )
    answer = await engine.state.queue.run(engine.generate, agent_id, question)
    return response(answer)


def response(answer: Answer) -> GenerateResponse:
    return GenerateResponse(
        text=answer.text,
        confidence=answer.confidence,
        model_version=answer.model_version,
        variant=answer.variant,
        query_id=answer.query_id,
        fallback=answer.fallback,
        teacher_error=answer.teacher_error,
        candidates=answer.ranked.candidates,
        reward=answer.ranked.reward,
        best_of_error=answer.ranked.error,
        sources=[
            Source(chunk_id=c.chunk_id, document_id=c.document_id, filename=c.filename)
            for c in answer.sources
        ],
    )
