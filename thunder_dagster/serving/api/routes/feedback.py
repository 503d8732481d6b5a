"""POST /v1/feedback: a user's 1-5 rating of an answer, by its query id."""

from fastapi import APIRouter, HTTPException

from thunder_dagster.feedback.records import UnknownQueryError
from thunder_dagster.serving.api.deps import Engine, Rater
from thunder_dagster.serving.api.problems import STORE_DOWN, described
from thunder_dagster.serving.api.schemas import FeedbackRequest, FeedbackResponse
from thunder_dagster.serving.errors import StoreUnavailable

router = APIRouter()


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    responses=described({404: "no answer has that query_id", 503: STORE_DOWN}, body=True),
)
def feedback(request: FeedbackRequest, who: Rater, engine: Engine) -> FeedbackResponse:
    """Rate an answer, or give a classify answer the label it should have had; a key limited
    to some agents rates only their answers."""
    state = engine.state
    if who.limited or request.label is not None:
        try:
            agent = state.writer.agent_of(request.query_id)
        except LookupError as error:
            raise StoreUnavailable(
                f"whose answer {request.query_id!r} is cannot be checked now: {error}; try again"
            ) from None
        if agent is not None:
            who.reach(agent, f"query {request.query_id}")
            if request.label is not None:
                engine.check_correction(agent, request.label)
    try:
        stored = state.writer.rate(request.query_id, request.score, request.comment, request.label)
    except UnknownQueryError:
        raise HTTPException(
            404,
            f"unknown query_id {request.query_id!r}: use the query_id a generate answer returned",
        ) from None
    except OSError as error:  # neither the store nor the spool can take it
        raise HTTPException(
            503,
            "feedback cannot be stored now: the query-log store and the spool are "
            "unavailable; try again",
        ) from error
    return FeedbackResponse(query_id=request.query_id, score=request.score, stored=stored)
