"""A deployed model in seconds: a tiny untrained Keras model released like a real build."""

# Imported here, at collection, and not inside a test: TensorFlow's absl logging binds its
# handler to the stderr of the moment, and a test's captured stderr is closed after it.
import keras

from thunder_dagster.deployments.registry import NoRegistry
from thunder_dagster.deployments.releases import release
from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.home import Home
from thunder_dagster.modeling.architectures import build_language_model, compile_model
from thunder_dagster.modeling.cards import CardMetrics, ModelCard
from thunder_dagster.modeling.graphs import export_onnx, export_step_onnx

VOCAB = tuple("\ufffd abcdefghijklmnopqrstuvwxyz.\n")
CONTEXT = 16


def deploy_tiny(home: Home, agent_id: str, family="gru", role="champion", seed=0, hidden=32):
    """An untrained tiny model released like a real build: model.keras, model.onnx, step.onnx
    and card.json, then the role's pointer."""
    keras.utils.set_random_seed(seed)
    hp = {
        "family": family,
        "context_length": CONTEXT,
        "learning_rate": 1e-3,
        "hidden_size": hidden,
        "layers": 1,
        "dropout": 0.0,
        "activation": "gelu",
    }
    model = compile_model(build_language_model(hp, len(VOCAB)), 1e-3)
    build = home.models_dir(agent_id) / "builds" / f"{family}-{seed}-{role}"
    build.mkdir(parents=True, exist_ok=True)
    model.save(build / "model.keras")
    write_atomically(build / "model.onnx", export_onnx(model, family).SerializeToString())
    step = export_step_onnx(model, family)
    if step is not None:
        write_atomically(build / "step.onnx", step.SerializeToString())
    ModelCard(
        agent_id=agent_id,
        family=family,
        params=hp,
        context_length=CONTEXT,
        vocab=VOCAB,
        metrics=CardMetrics(validation_loss=float("nan"), unigram_loss=float("nan")),
    ).write(build)
    move = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        build,
        sha256_of(build / "model.onnx"),
        NoRegistry(),
        role=role,
        step_sha256=sha256_of(build / "step.onnx") if step is not None else None,
    )
    return move.deployment
