"""The routes that write the query log, fuzzed from the API document against a real PostgreSQL
store (issue 29): PostgreSQL refuses what SQLite takes (a NUL character, a string longer than
its column), so whatever schemathesis sends, no 5xx, every answer the document allows, and the
store still takes every row afterwards: nothing spooled, nothing set aside."""

import hypothesis
import schemathesis
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from tests.services import SERVICES, postgres_database
from tests.serving.test_api_fuzz import WORK_THE_DOCUMENT_ALLOWS, repeatable
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings

pytestmark = SERVICES
EXAMPLES = 40
WRITING = (
    "POST /v1/agents/{agent_id}/generate",
    "POST /v1/feedback",
    "POST /v1/admin/agents/{agent_id}/ab-tests",
)


def test_the_routes_that_write_the_log_keep_postgresql_taking_rows(home):
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    with postgres_database() as url:
        settings = ServerSettings(
            deployments_root=home.root / "deployments",
            query_db_url=url,
            reload_seconds=0.05,
            max_work_tokens=WORK_THE_DOCUMENT_ALLOWS,
        )
        app = create_app(settings)
        with TestClient(app) as client:
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            strategies = []
            for label in WRITING:
                operation = schema.find_operation_by_label(label)
                agent = {"agent_id": "acme"} if "{agent_id}" in label else {}
                strategies += [
                    operation.as_strategy(mode, path_parameters=agent or None)
                    for mode in (
                        schemathesis.GenerationMode.POSITIVE,
                        schemathesis.GenerationMode.NEGATIVE,
                    )
                ]
            for strategy in strategies:

                @hypothesis.given(case=strategy)
                @repeatable(EXAMPLES)
                def fuzz(case):
                    case.call_and_validate()

                fuzz()
            writer = client.app.state.writer
            writer.flush()
            answer = client.post(
                "/v1/agents/acme/generate", json={"prompt": "Hi", "user_id": "u", "max_tokens": 2}
            )
            assert answer.status_code == 200
            writer.flush()
            assert writer.store().query(answer.json()["query_id"]) is not None
            assert writer.problem() is None
            assert writer.spool.depth == 0 and writer.spool.dead_letters == 0
