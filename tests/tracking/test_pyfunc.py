"""Issue 30 item 4: a released version in MLflow's registry is an MLflow Model:
`mlflow.pyfunc.load_model("models:/thunder-<agent>@champion")` loads it and answers as the
model server answers the same greedy request."""

from pathlib import Path

import mlflow
import pandas as pd
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings
from thunder_dagster.tracking.experiments import Tracker
from thunder_dagster.tracking.registry import MlflowRegistry, registered_model_name


def test_the_champion_loads_with_mlflow_pyfunc_and_answers_as_the_server(home, tmp_path):
    deploy_tiny(home, "acme")
    deployment = read_pointer(home.deployments_dir("acme"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "thunder", (tmp_path / "artifacts").as_uri(), print)
    registry = MlflowRegistry(tracker)
    run = tracker.start_run("release", {})
    version = registry.register("acme", deployment.version, Path(deployment.model_dir), run, {})
    registry.set_alias("acme", "champion", version)
    assert tracker.available, tracker.failure
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{registered_model_name('acme')}@champion")
    asked = {"max_tokens": 24, "temperature": 0.0}
    prompts = ["The bakery", "Bread"]
    answered = model.predict(pd.DataFrame({"prompt": prompts}), params=asked)
    assert list(answered.columns) == ["text", "confidence"] and len(answered) == 2
    settings = ServerSettings(
        deployments_root=home.root / "deployments", query_db_url=home.queries_db_url
    )
    with TestClient(create_app(settings)) as client:
        served = [
            client.post(
                "/v1/agents/acme/generate", json={"prompt": prompt, "user_id": "u", **asked}
            ).json()
            for prompt in prompts
        ]
    assert list(answered["text"]) == [answer["text"] for answer in served]
    assert all(text for text in answered["text"])
