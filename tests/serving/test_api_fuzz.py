"""The model server's HTTP API fuzzed from its own OpenAPI document (schemathesis): whatever a
client sends, valid by the document or not, no 5xx, and every answer matches the document."""

import hypothesis
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.factories import CORPUS, deploy_classifier, deploy_tiny, index_agent
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.api.schemas import MAX_BEST_OF
from thunder_dagster.serving.state import HARD_TOKEN_LIMIT, ServerSettings

EXAMPLES = 60
# The work budget (best_of x max_tokens, tests/serving/test_bounds.py) is a setting tighter than
# the document can say; here it is set to what the document allows, so that a valid request
# is never refused for it.
WORK_THE_DOCUMENT_ALLOWS = MAX_BEST_OF * HARD_TOKEN_LIMIT
# A document's name (its type, not a hidden or temporary file's) and an upload's content (a
# PDF's header, a zip with a Word document) are checked beyond what the document can say.
CONTENT_CHECKED = {
    f"{method} /v1/admin/agents/{{agent_id}}/documents/{{category}}/{{filename}}"
    for method in ("PUT", "DELETE")
}


def repeatable(examples: int):
    """Hypothesis settings for a fuzz run: the same examples every time, no deadline."""
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )


def test_no_request_gets_a_5xx_or_an_answer_outside_the_document(home):
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    deploy_classifier(home, "moods")
    text = (CORPUS / "text" / "tinyshakespeare.txt").read_text()[:3000]
    index_agent(home, "acme", {"play.txt": text})
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        encoder_cache_dir=home.encoder_cache_dir,
        max_work_tokens=WORK_THE_DOCUMENT_ALLOWS,
    )
    app = create_app(settings)
    with TestClient(app):  # the lifespan runs: models load, the query-log writer starts
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {operation.label for operation in operations} == {
            "GET /healthz",
            "GET /livez",
            "GET /v1/admin/audit",
            "GET /v1/admin/deployments",
            "GET /v1/admin/agents/{agent_id}/versions",
            "POST /v1/admin/agents/{agent_id}/ab-tests",
            "GET /v1/admin/agents/{agent_id}/ab-tests",
            "GET /v1/admin/ab-tests/{test_id}",
            "POST /v1/admin/ab-tests/{test_id}/stop",
            "POST /v1/agents/{agent_id}/generate",
            "POST /v1/agents/{agent_id}/search",
            "POST /v1/agents/{agent_id}/classify",
            "POST /v1/feedback",
            "POST /v1/chat/completions",
            "GET /v1/models",
            "POST /v1/embeddings",
            "POST /v1/admin/agents",
            "GET /v1/admin/agents",
            "GET /v1/admin/agents/{agent_id}",
            "PUT /v1/admin/agents/{agent_id}/documents/{category}/{filename}",
            "DELETE /v1/admin/agents/{agent_id}/documents/{category}/{filename}",
        }
        generate = schema.find_operation_by_label("POST /v1/agents/{agent_id}/generate")
        search = schema.find_operation_by_label("POST /v1/agents/{agent_id}/search")
        testing = schema.find_operation_by_label("POST /v1/admin/agents/{agent_id}/ab-tests")
        # Invalid input too, where there is input to get wrong (healthz takes none).
        strategies = [operation.as_strategy() for operation in operations] + [
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)
            for operation in operations
            if operation.method.upper() == "POST"
        ]
        # The deployed and indexed agent too, so that generation (grounded or not), the
        # search itself and its A/B test meet whatever prompt, query or split comes; and the
        # classifier, whatever text it is sent (and generation it refuses).
        strategies += [
            operation.as_strategy(path_parameters={"agent_id": "acme"})
            for operation in (generate, search, testing)
        ]
        classify = schema.find_operation_by_label("POST /v1/agents/{agent_id}/classify")
        strategies += [
            operation.as_strategy(path_parameters={"agent_id": "moods"})
            for operation in (classify, generate)
        ]
        for strategy in strategies:

            @hypothesis.given(case=strategy)
            @repeatable(EXAMPLES)
            def fuzz(case):
                # Their 422 for a name or bytes the agent cannot take is not a rejected valid
                # request.
                checked = case.operation.label not in CONTENT_CHECKED
                case.call_and_validate(
                    excluded_checks=[] if checked else [positive_data_acceptance]
                )

            fuzz()


def test_a_chat_agent_answers_every_request_by_the_document(home, instruct_base):
    """The OpenAI-compatible routes with a chat agent that answers: whatever the messages,
    sampling and stops, an answer the document allows (the server's token limit kept small so
    that each answer is quick; larger asks get the documented 422)."""
    from thunder_dagster.tasks.agents import write_task

    home.create_agent("talk")
    write_task(home.agent_dir("talk"), "chat")
    text = (CORPUS / "text" / "tinyshakespeare.txt").read_text()[:3000]
    index_agent(home, "talk", {"play.txt": text})
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        encoder_cache_dir=home.encoder_cache_dir,
        max_tokens=6,
    )
    app = create_app(settings)
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        chat = schema.find_operation_by_label("POST /v1/chat/completions")

        def to_talk(case):
            if isinstance(case.body, dict):
                case.body["model"] = "talk"
            return case

        for strategy in (chat.as_strategy().map(to_talk), chat.as_strategy()):

            @hypothesis.given(case=strategy)
            @repeatable(25)
            def fuzz(case):
                # This server is configured tighter than the document on purpose (6 tokens):
                # its documented 422 for a larger max_tokens is not a rejected valid request.
                # The contract is checked, not the speed: the base's prompt processing on a
                # busy 2-core machine took over schemathesis' default 10 s once.
                case.call_and_validate(excluded_checks=[positive_data_acceptance], timeout=60)

            fuzz()


def test_a_keyed_server_answers_every_request_by_its_document_with_and_without_a_key(home, store):
    """With keys on, the document declares Bearer auth and the 401 and 403 answers; requests
    without a key, with a made-up one (schemathesis' own auth check) and with a real key that
    holds every scope all get answers the document allows, and none a 5xx."""
    from thunder_dagster.access.keys import KeyStore

    deploy_tiny(home, "acme")
    _, token = KeyStore(store.engine).create("fuzz", ["generate", "feedback", "admin"])
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        auth="keys",
    )
    app = create_app(settings)
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        for operation in operations:
            for headers in ({}, {"Authorization": f"Bearer {token}"}):
                fuzz_with(operation, headers)


def fuzz_with(operation, headers: dict) -> None:
    @hypothesis.given(case=operation.as_strategy())
    @repeatable(15)
    def fuzz(case):
        case.call_and_validate(headers=headers)

    fuzz()


def test_the_endpoints_that_start_runs_answer_by_their_document_without_a_webserver(home):
    """With THUNDER_DAGSTER_URL naming a port nothing listens on, the run endpoints' documented
    503 is their answer to a valid request (the webserver cannot be reached: nothing is 5xx by
    accident); every answer, valid input or not, is one the document declares, in its schema."""
    from schemathesis.checks import not_a_server_error

    from tests.factories import free_port

    deploy_tiny(home, "acme")
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        dagster_url=f"http://127.0.0.1:{free_port()}",
    )
    app = create_app(settings)
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        runs = [
            result.ok()
            for result in schema.get_all_operations()
            if "/training" in result.ok().label
            or "/runs/" in result.ok().label
            or result.ok().label.rsplit("/", 1)[-1]
            in ("rollback", "undeploy", "redeploy", "comparisons")
        ]
        assert len(runs) == 7, [operation.label for operation in runs]
        for operation in runs:
            for strategy in (
                operation.as_strategy(),
                operation.as_strategy(path_parameters={"agent_id": "acme"})
                if "{agent_id}" in operation.label
                else operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            ):

                @hypothesis.given(case=strategy)
                @repeatable(10)
                def fuzz(case):
                    response = case.call_and_validate(excluded_checks=[not_a_server_error])
                    if response.status_code >= 500:
                        assert response.status_code == 503, response.text
                        assert "did not answer" in response.json()["detail"]

                fuzz()
