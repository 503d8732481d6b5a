"""POST /v1/agents/{agent_id}/search: the agent's chunks nearest a query."""

from fastapi import APIRouter

from thunder_dagster.serving.api.deps import Engine, Generator
from thunder_dagster.serving.api.problems import described
from thunder_dagster.serving.api.schemas import SearchHit, SearchRequest, SearchResponse

router = APIRouter()


@router.post(
    "/v1/agents/{agent_id}/search",
    response_model=SearchResponse,
    responses=described({404: "the agent has no retrieval index"}, body=True),
)
async def search(
    agent_id: str, request: SearchRequest, _who: Generator, engine: Engine
) -> SearchResponse:
    """The agent's chunks nearest the query: BM25 and vector search, fused."""
    index, hits = await engine.state.queue.run(engine.search, agent_id, request.query, request.k)
    return SearchResponse(
        agent_id=agent_id,
        index_version=index.version,
        results=[
            SearchHit(
                chunk_id=hit.chunk.chunk_id,
                document_id=hit.chunk.document_id,
                category=hit.chunk.category,
                filename=hit.chunk.filename,
                start=hit.chunk.start,
                end=hit.chunk.end,
                text=hit.chunk.text,
                score=hit.score,
                found_by=hit.found_by,
            )
            for hit in hits
        ],
    )
