"""The HTTP contract: what each endpoint takes and answers, as pydantic models (the API
document is generated from them)."""

import re
import typing
from typing import Annotated, Literal

from fastapi import Path as FastApiPath
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from thunder_dagster.serving.state import (
    HARD_PROMPT_LIMIT,
    HARD_QUERY_LIMIT,
    HARD_TOKEN_LIMIT,
    MAX_BEST_OF,
    MAX_RESULTS,
)

# A character that is not white space, spelled out so that the document's pattern means the
# same in every regex dialect (ECMA's \s, Python's and Rust's differ on a few characters): what
# the validators below check.
NOT_BLANK = re.compile(
    "[^\\t\\n\\v\\f\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
)


# The document's patterns for the texts the query log keeps: no NUL, and for those that must
# not be blank, a character that is neither white space nor NUL somewhere.
STORABLE = {"pattern": "^[^\\u0000]*$"}
STORABLE_NOT_BLANK = {
    "pattern": "^[^\\u0000]*" + NOT_BLANK.pattern.replace("[^", "[^\\u0000", 1) + "[^\\u0000]*$"
}


def storable(value: str | None) -> str | None:
    """A text the query log keeps: PostgreSQL's text cannot hold NUL, so none is accepted."""
    if value is not None and "\u0000" in value:
        raise ValueError(
            "holds a NUL character (\\u0000), which the query log cannot store: remove it"
        )
    return value


def _numeric(annotation) -> bool:
    return annotation in (int, float) or any(_numeric(a) for a in typing.get_args(annotation))


def numbers_not_booleans(cls, data):
    """A body's numbers as JSON has them: Pydantic's lax mode reads true as 1 and false as 0,
    which the API document (an integer or a number) does not allow."""
    if isinstance(data, dict):
        for name, field in cls.model_fields.items():
            if isinstance(data.get(field.alias or name), bool) and _numeric(field.annotation):
                raise ValueError(f"{name} is a number, not true or false")
    return data


class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do")


class FeedbackResponse(BaseModel):
    query_id: str
    score: int
    stored: bool = Field(
        description="true: in the query log; false: in the server's spool, written to the log "
        "when its store is back (a rating of an id no answer has is then dropped)"
    )


class GenerateRequest(BaseModel):
    _numbers = model_validator(mode="before")(numbers_not_booleans)
    # JSON as Python reads it allows NaN and Infinity; no field here means anything by them.
    model_config = ConfigDict(allow_inf_nan=False)

    prompt: str = Field(
        max_length=HARD_PROMPT_LIMIT,
        json_schema_extra=STORABLE,
        description="the text to continue",
    )
    max_tokens: int = Field(
        default=128, ge=1, le=HARD_TOKEN_LIMIT, description="characters to generate"
    )
    temperature: float = Field(default=0.8, ge=0.0, le=5.0, description="0 is greedy")
    user_id: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra=STORABLE,
        description="decides the A/B variant; with API keys, only a key trusted to name its "
        "users (a product's backend) sets it, and otherwise the key is the user",
    )
    grounding: Literal["none", "retrieved"] = Field(
        default="none",
        description="retrieved: the agent's best passages for the prompt are fed through the "
        "model before it, and the answer lists them",
    )
    best_of: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BEST_OF,
        description="sample this many answers and return the one the agent's reward model "
        "ranks highest (within the server's latency budget for the extra ones; at temperature "
        "0 every sample is the same, so one is made); empty: the agent's adopted best-of-n "
        "(an A/B test promoted it), else 1",
    )

    _storable = field_validator("prompt", "user_id")(storable)


class Source(BaseModel):
    chunk_id: str
    document_id: str
    filename: str


class GenerateResponse(BaseModel):
    text: str
    confidence: float | None = Field(
        description="the mean probability the answering model gave its characters (tokens, for "
        "an external teacher; null when it reports none)"
    )
    model_version: str = Field(description="the local version, or api-b:MODEL for API B")
    variant: str
    query_id: str
    fallback: bool
    sources: list[Source] = Field(default_factory=list, description="grounded answers only")
    teacher_error: str | None = Field(
        default=None,
        description="why the external teacher, asked because the local model was unsure, could "
        "not answer: the local answer is returned instead",
    )
    candidates: int = Field(default=1, description="answers sampled and ranked (best_of)")
    reward: float | None = Field(
        default=None, description="the reward model's 1-5 score of the answer, when ranked"
    )
    best_of_error: str | None = Field(
        default=None, description="why fewer answers than best_of were ranked, if they were"
    )


class SearchRequest(BaseModel):
    _numbers = model_validator(mode="before")(numbers_not_booleans)
    query: str = Field(
        min_length=1,
        max_length=HARD_QUERY_LIMIT,
        json_schema_extra={"pattern": NOT_BLANK.pattern},
        description="what to find",
    )
    k: int = Field(default=5, ge=1, le=MAX_RESULTS, description="how many chunks to return")

    @field_validator("query")
    @classmethod
    def not_blank(cls, query: str) -> str:
        if not NOT_BLANK.search(query):
            raise ValueError("the query is blank: send some words to search for")
        return query


class SearchHit(BaseModel):
    chunk_id: str
    document_id: str
    category: str
    filename: str
    start: int
    end: int
    text: str
    score: float = Field(
        description="BM25's standardised score plus the vectors', weighted as the index "
        "fitted; higher is better"
    )
    found_by: Literal["bm25", "vector", "both"]


class SearchResponse(BaseModel):
    agent_id: str
    index_version: str
    results: list[SearchHit]


class ClassifyRequest(BaseModel):
    text: str = Field(
        min_length=1,
        max_length=HARD_QUERY_LIMIT,
        json_schema_extra=STORABLE_NOT_BLANK,
        description="the text to label",
    )
    user_id: str = Field(
        default="anonymous",
        min_length=1,
        max_length=128,
        json_schema_extra=STORABLE,
        description="who asks: each user's corrected labels count once toward retraining (as "
        "for generate, a key not trusted to name its users is the user)",
    )

    _storable = field_validator("text", "user_id")(storable)

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str) -> str:
        if not NOT_BLANK.search(text):
            raise ValueError("the text is blank: send the text to classify")
        return text


class ClassifyResponse(BaseModel):
    label: str = Field(description="the most probable label")
    probabilities: dict[str, float] = Field(description="every label's probability")
    model_version: str
    task: Literal["classification", "sentiment"]
    query_id: str = Field(description="rates the answer, or corrects its label, in /v1/feedback")
    variant: Literal["champion", "challenger"] = Field(
        description="the arm of the agent's A/B split that answered"
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    _numbers = model_validator(mode="before")(numbers_not_booleans)

    query_id: str = Field(min_length=1, max_length=64, json_schema_extra=STORABLE)
    score: int = Field(ge=1, le=5, description="1 (bad) to 5 (good); 4 and 5 count as positive")
    comment: str | None = Field(default=None, max_length=4000, json_schema_extra=STORABLE)
    label: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        json_schema_extra=STORABLE_NOT_BLANK,
        description="for a classify answer: the label it should have had, one of the agent's "
        "labels; it becomes a labelled example of the agent (traced to this query_id) when "
        "the agent is next retrained",
    )

    _storable = field_validator("query_id", "comment", "label")(storable)

    @field_validator("label")
    @classmethod
    def label_not_blank(cls, label: str | None) -> str | None:
        if label is not None and not NOT_BLANK.search(label):
            raise ValueError("the label is blank: send one of the agent's labels, or no label")
        return label


class RoleStatus(BaseModel):
    version: str
    family: str
    deployed_at: str = Field(description="UTC, ISO 8601: when this role was pointed at it")
    test_loss: float | None = Field(description="nats per character on its test split")
    checks: dict[str, bool] = Field(description="the export's checks and whether each passed")


class AgentDeployment(BaseModel):
    agent_id: str
    roles: dict[str, RoleStatus | None]
    refused: dict[str, str] = Field(description="role -> why its candidate was refused")
    undeployed: str | None = Field(
        default=None, description="since when, by whom and why it is not served, if it is not"
    )


class VersionItem(BaseModel):
    version: str
    family: str | None
    params: dict
    test_loss: float | None
    parent_version: str | None
    change: str | None = Field(description="retrain, fine_tune or distillation")
    created_at: str | None
    roles: list[str]
    deployed_at: str | None
    problem: str | None = Field(description="why its card could not be read, if it could not")
    accuracy: float | None = Field(
        default=None, description="a classifier's accuracy on its test split"
    )
    macro_f1: float | None = Field(
        default=None, description="a classifier's macro F1 on its test split"
    )


class TrainingRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    _numbers = model_validator(mode="before")(numbers_not_booleans)

    minutes: float = Field(ge=0.2, le=600, description="the whole run's budget, as `--minutes`")
    trials: int | None = Field(default=None, ge=1, le=500, description="search trials at most")


VERSION = r"^\d+\.\d+\.\d+$"


class RollbackRequest(BaseModel):
    to_version: str | None = Field(
        default=None,
        pattern=VERSION,
        description="an earlier champion's version; empty: the one before the current",
    )


class ComparisonRequest(BaseModel):
    version_a: str = Field(pattern=VERSION, description="a released version, e.g. the champion")
    version_b: str = Field(pattern=VERSION, description="the version to compare with it")
    prompts: int = Field(default=8, ge=1, le=64, description="prompts cut from the test text")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="the sampling's seed, for both")


class PromoteRequest(BaseModel):
    reason: str = Field(
        default="promoted by an operator", min_length=1, max_length=500, description="why"
    )


class UndeployRequest(BaseModel):
    reason: str = Field(
        default="undeployed by an operator", min_length=1, max_length=500, description="why"
    )


class RunItem(BaseModel):
    run_id: str
    status: str = Field(description="Dagster's run status: QUEUED, STARTED, SUCCESS, ...")


RunId = Annotated[str, FastApiPath(pattern=r"^[0-9a-f-]{8,64}$", description="a Dagster run id")]


class AuditItem(BaseModel):
    id: int
    at: str = Field(description="UTC, ISO 8601")
    actor: str
    action: str
    target: str
    request_id: str
    outcome: str
    detail: str | None
