"""The OpenAI-compatible surface, so that any OpenAI client, LangChain, LlamaIndex or a chat
UI can talk to an agent: POST /v1/chat/completions (`model` is the agent id; streamed as
server-sent events ending with [DONE]), GET /v1/models (the agents the key may use) and POST
/v1/embeddings (the sentence encoder). Answers carry their sources and query id in fields
OpenAI clients ignore. Keys are Bearer tokens, as on every other route."""

import asyncio
import json
import time
from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.instruct.decoding import Sampling, Step
from thunder_dagster.instruct.tokens import Message
from thunder_dagster.serving.api.deps import Engine, Generator
from thunder_dagster.serving.api.problems import described
from thunder_dagster.serving.api.schemas import STORABLE, numbers_not_booleans, storable
from thunder_dagster.serving.conversations import ChatAnswer, ChatQuestion, DocumentChat
from thunder_dagster.serving.errors import UnknownAgent, Unreachable, WrongTask
from thunder_dagster.serving.state import HARD_PROMPT_LIMIT, HARD_TOKEN_LIMIT

router = APIRouter()
MAX_MESSAGES = 64
MAX_EMBEDDING_INPUTS = 64
DEFAULT_TOKENS = 256  # an answer's tokens when the request names none (or the server's limit)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=HARD_PROMPT_LIMIT, json_schema_extra=STORABLE)

    _storable = field_validator("content")(storable)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False, extra="ignore")
    _numbers = model_validator(mode="before")(numbers_not_booleans)

    model: str = Field(description="the agent's id (GET /v1/models lists them)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=HARD_TOKEN_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=HARD_TOKEN_LIMIT)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(default=None)
    stream: bool = False
    user: str = Field(default="anonymous", min_length=1, max_length=128, json_schema_extra=STORABLE)

    _storable = field_validator("user")(storable)

    def stops(self) -> tuple[str, ...]:
        given = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(stop for stop in given[:4] if stop)


class ChatSource(BaseModel):
    filename: str
    chunk_id: str
    quote: str = Field(description="the sentence of the chunk the answer rests on")
    similarity: float


class ChatChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatChoiceMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    query_id: str = Field(description="rates the answer: POST /v1/feedback")
    sources: list[ChatSource]
    covered: bool = Field(description="false: the documents do not cover the question")
    fallback: bool = Field(description="true: API B answered, the local answer was unsure")


class ModelItem(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "thunder-dagster"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelItem]


class EmbeddingRequest(BaseModel):
    model: str = Field(default="", description="ignored: the server's sentence encoder answers")
    input: Annotated[
        str | list[Annotated[str, Field(min_length=1, max_length=HARD_PROMPT_LIMIT)]],
        Field(max_length=HARD_PROMPT_LIMIT),
    ]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: dict[str, int]


def _question(request: ChatCompletionRequest, user: str, limit: int) -> ChatQuestion:
    tokens = request.max_completion_tokens or request.max_tokens or min(DEFAULT_TOKENS, limit)
    sampling = Sampling(tokens, request.temperature, request.top_p, request.seed, request.stops())
    messages = tuple(Message(m.role, m.content) for m in request.messages)
    return ChatQuestion(messages, user, sampling)


def _completion(agent_id: str, answer: ChatAnswer) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{answer.query_id}",
        created=int(time.time()),
        model=agent_id,
        choices=[
            ChatChoice(
                message=ChatChoiceMessage(content=answer.text),
                finish_reason=answer.finish_reason,
            )
        ],
        usage=Usage(
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            total_tokens=answer.prompt_tokens + answer.completion_tokens,
        ),
        query_id=answer.query_id,
        sources=[
            ChatSource(
                filename=s.chunk.filename,
                chunk_id=s.chunk.chunk_id,
                quote=s.sentence,
                similarity=round(s.similarity, 4),
            )
            for s in answer.sources
        ],
        covered=answer.covered,
        fallback=answer.fallback,
    )


def _chat_agent(engine, agent_id: str) -> str:
    if not AGENT_ID_PATTERN.fullmatch(agent_id):
        raise UnknownAgent(f"model {agent_id!r} is not an agent id: GET /v1/models lists them")
    if not engine.is_instruct(agent_id):
        if engine.state.pool.get(agent_id) is None:
            raise UnknownAgent(f"no chat or instruction agent {agent_id!r}: GET /v1/models")
        raise WrongTask(
            f"agent {agent_id!r} is not a chat or instruction agent: it answers "
            f"POST /v1/agents/{agent_id}/generate or classify",
            "generation",
            "generate",
        )
    return agent_id


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses=described(
        {404: "no such agent, or no index yet", 409: "not a chat or instruction agent"},
        body=True,
    )
    | {200: {"content": {"text/event-stream": {}}, "description": "the answer (or its stream)"}},
)
async def chat_completions(request: ChatCompletionRequest, who: Generator, engine: Engine):
    """The agent's answer from its documents, as OpenAI's chat completions give it."""
    agent_id = _chat_agent(engine, request.model)
    who.reach(agent_id, f"agent {agent_id!r}")
    question = _question(request, who.user(request.user, "user"), engine.settings.max_tokens)
    chat = DocumentChat(engine)
    loop = asyncio.get_running_loop()
    if not request.stream:
        answer = await engine.state.queue.run(chat.answer, agent_id, question)
        return _completion(agent_id, answer)
    steps = chat.stream(agent_id, question)
    first = await engine.state.queue.run(next, steps)
    return StreamingResponse(
        _events(agent_id, first, steps, loop, engine.state.workers),
        media_type="text/event-stream",
    )


async def _events(agent_id, first, steps, loop, workers):
    """Server-sent events: the role, each piece of text, the finish with usage, [DONE]."""
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": "chatcmpl-stream",
            "object": "chat.completion.chunk",
            "created": created,
            "model": agent_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    item = first
    while isinstance(item, Step):
        if item.text:
            yield chunk({"content": item.text})
        item = await loop.run_in_executor(workers, next, steps)
    finished = _completion(agent_id, item)
    yield chunk(
        {},
        item.finish_reason,
        usage=finished.usage.model_dump(),
        query_id=item.query_id,
        sources=[source.model_dump() for source in finished.sources],
    )
    yield "data: [DONE]\n\n"


@router.get("/v1/models", response_model=ModelList, responses=described({}))
async def models(who: Generator, engine: Engine) -> ModelList:
    """The agents this key may ask: every agent with a deployed model or a chat index."""
    state = engine.state
    served = {name for name, m in list(state.pool.agents.items()) if m.champion is not None}
    served |= {name for name in state.retrieval.agents() if engine.is_instruct(name)}
    return ModelList(data=[ModelItem(id=name) for name in sorted(served) if who.may(name)])


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingList,
    responses=described({503: "the sentence encoder is not available"}, body=True),
)
async def embeddings(request: EmbeddingRequest, who: Generator, engine: Engine) -> EmbeddingList:
    """The sentence encoder's unit vectors for the input texts."""
    texts = [request.input] if isinstance(request.input, str) else request.input
    texts = texts[:MAX_EMBEDDING_INPUTS]
    retrieval = engine.state.retrieval
    from thunder_dagster.retrieval.encoder import EncoderUnavailableError

    try:
        vectors = await engine.state.queue.run(retrieval.encode_many, texts)
    except EncoderUnavailableError as error:
        raise Unreachable(f"the sentence encoder is not available: {error}") from None
    return EmbeddingList(
        data=[Embedding(index=i, embedding=[float(x) for x in v]) for i, v in enumerate(vectors)],
        model=retrieval.encoder_version() or "sentence-encoder",
        usage={"prompt_tokens": 0, "total_tokens": 0},
    )
