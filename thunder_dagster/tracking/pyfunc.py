"""A released version as an MLflow Model (issue 30): what the registry holds for each version is
a pyfunc model whose artifact is the release's folder (its ONNX graphs, its tokenizer or
vocabulary, its card), answering as `thunder generate` or `thunder classify` does:

    model = mlflow.pyfunc.load_model("models:/thunder-<agent>@champion")
    model.predict(pandas.DataFrame({"prompt": ["The bakery"]}),
                  params={"max_tokens": 64, "temperature": 0.0})   # text, confidence
    model.predict(pandas.DataFrame({"text": ["Not what I expected"]}))  # label, probabilities

and `mlflow models serve -m models:/thunder-<agent>@champion` serves it. The files are checked
and probed as a server checks them before it answers (serving/loading.py). The deployment
pointer stays the serving truth; the registry's aliases follow it."""

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow.pyfunc

RELEASE = "release"


def deployment_of(folder: Path):
    """The Deployment a release folder describes, as a pointer would name it."""
    from thunder_dagster.deployments.pointers import Deployment
    from thunder_dagster.files import sha256_of
    from thunder_dagster.modeling.cards import CARD_NAME, ONNX_NAME, STEP_NAME, ModelCard

    card = ModelCard.read(folder)
    step = folder / STEP_NAME
    return Deployment(
        agent_id=card.agent_id,
        version=card.version or "unreleased",
        family=card.family,
        model_dir=str(folder),
        onnx_path=str(folder / ONNX_NAME),
        onnx_sha256=sha256_of(folder / ONNX_NAME),
        card_path=str(folder / CARD_NAME),
        registry_version=None,
        deployed_at=datetime.now(UTC).isoformat(),
        step_path=str(step) if step.is_file() else None,
        step_sha256=sha256_of(step) if step.is_file() else None,
    )


class ThunderModel(mlflow.pyfunc.PythonModel):
    """The release's model behind MLflow's pyfunc interface."""

    def load_context(self, context) -> None:
        from thunder_dagster.serving.loading import load_deployment

        self.loaded = load_deployment(deployment_of(Path(context.artifacts[RELEASE])))

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from thunder_dagster.tasks.registry import task_kind

        params = params or {}
        if task_kind(self.loaded.task).labelled:
            from thunder_dagster.serving.classification import classify

            found = [classify(self.loaded, str(text)) for text in model_input["text"]]
            return pd.DataFrame(
                {
                    "label": [label for label, _ in found],
                    "probabilities": [json.dumps(p) for _, p in found],
                }
            )
        from thunder_dagster.serving.generation import generate

        answers = [
            generate(
                self.loaded,
                str(prompt),
                int(params.get("max_tokens", 64)),
                float(params.get("temperature", 0.8)),
                seed=params.get("seed"),
            )
            for prompt in model_input["prompt"]
        ]
        return pd.DataFrame(
            {"text": [a.text for a in answers], "confidence": [a.confidence for a in answers]}
        )


def save_release(release: Path, target: Path, version: str) -> Path:
    """Write the MLflow Model of a release folder into `target` (a new folder)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.tasks.registry import task_kind

    labelled = task_kind(ModelCard.read(release).task).labelled
    if labelled:
        inputs = Schema([ColSpec("string", "text")])
        outputs = Schema([ColSpec("string", "label"), ColSpec("string", "probabilities")])
        params = None
    else:
        inputs = Schema([ColSpec("string", "prompt")])
        outputs = Schema([ColSpec("string", "text"), ColSpec("double", "confidence")])
        params = ParamSchema(
            [
                ParamSpec("max_tokens", "long", 64),
                ParamSpec("temperature", "double", 0.8),
                ParamSpec("seed", "long", None),
            ]
        )
    with tempfile.TemporaryDirectory() as scratch:
        # MLflow keeps an artifact folder under its own name: the version's, not a release's
        # staging name (".1.0.0.staging", which reads as a half-written release).
        named = Path(scratch) / f"release-{version}"
        shutil.copytree(release, named)
        mlflow.pyfunc.save_model(
            path=str(target),
            python_model=ThunderModel(),
            artifacts={RELEASE: str(named)},
            signature=ModelSignature(inputs=inputs, outputs=outputs, params=params),
            # The package that answers; installed where the model is loaded or served.
            pip_requirements=[f"thunder-dagster=={_package_version()}"],
            metadata={"thunder_version": version},
        )
    return target


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("thunder-dagster")
    except PackageNotFoundError:
        return "0.1.0"
