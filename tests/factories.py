"""What tests build: files, resources on a temporary home, a released tiny model, logged
queries, an analysed day. Test modules import from here, never from one another."""

import functools
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
from absl import logging as absl_logging

from thunder_dagster.assets import feedback
from thunder_dagster.deployments.registry import NoRegistry
from thunder_dagster.deployments.releases import release
from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.home import Home
from thunder_dagster.modeling.architectures import build_language_model, compile_model

# Imported here, at collection, and not inside a test: TensorFlow's absl logging binds its
# handler to the stderr of the moment, and a test's captured stderr is closed after it.
from thunder_dagster.modeling.backend import keras
from thunder_dagster.modeling.cards import CardMetrics, ModelCard
from thunder_dagster.modeling.graphs import export_onnx, export_step_onnx
from thunder_dagster.resources.bundle import build_resources

# Even at collection that stderr is pytest's capture, and a CliRunner test's run closes it:
# Dagster's logging set-up (dictConfig) closes every handler ever made, and absl's closes its
# stream unless it is the sys.stderr of that moment, which CliRunner has swapped. The process's
# own stderr it never closes.
absl_logging.get_absl_handler().python_handler.setStream(sys.__stderr__)

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
# The step key of a tpe_trials search step, as the event log names it.
SEARCH_STEP = "tpe_trials.search_trials"
PHRASES = ["the cat sat on the mat. ", "a dog ran to the park. ", "the sun is out today. "]


def write(path: Path, data: bytes | str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def resources(home: Home) -> dict:
    """Every resource of the code location, on the test's THUNDER_HOME."""
    return build_resources(str(home.root))


class Given(dg.IOManager):
    """An asset's inputs as an earlier run would have left them, by input asset name."""

    def __init__(self, values: dict):
        self.values = values

    def handle_output(self, context, obj):
        pass

    def load_input(self, context):
        return self.values[context.asset_key.path[-1]]


def materialize_given(home: Home, asset, agent_id: str, values: dict, run_config=None):
    """`asset` alone for the agent, its inputs `values` (by asset name), on a fresh instance."""
    from thunder_dagster.runtime.partitions import agents

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [agent_id])
        upstream = [dg.SourceAsset(name, partitions_def=agents) for name in values]
        return dg.materialize(
            [asset, *upstream],
            partition_key=agent_id,
            instance=instance,
            resources=resources(home) | {"io_manager": Given(values)},
            run_config=run_config,
            raise_on_error=False,
        )


def thunder(*args: str) -> subprocess.CompletedProcess:
    """The real command in its own process: in a test's process, TensorFlow (loaded by
    deploy_tiny) and click's output capture do not mix."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "thunder"), *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def deploy_classifier(home: Home, agent_id: str, labels=("negative", "positive"), seed=0):
    """An untrained classifier released like text_classifier's builds: encoder, head and
    softmax as one graph, the tokenizer beside it, a card naming the task and the labels."""
    from thunder_dagster.modeling.cards import TOKENIZER_NAME
    from thunder_dagster.modeling.classifiers import KNOWN_GOOD_HEAD, build_head
    from thunder_dagster.modeling.heads import classifier_graph, head_graph

    encoder = sentence_encoder(str(home.encoder_cache_dir))
    keras.utils.set_random_seed(seed)
    head = build_head(KNOWN_GOOD_HEAD, encoder.dimensions, len(labels))
    build = home.models_dir(agent_id) / "builds" / f"classifier-{seed}"
    build.mkdir(parents=True, exist_ok=True)
    head.save(build / "model.keras")
    graph = classifier_graph(encoder.graph_path, head_graph(head, KNOWN_GOOD_HEAD["activation"]))
    write_atomically(build / "model.onnx", graph.SerializeToString())
    tokenizer = (encoder.files.folder / TOKENIZER_NAME).read_bytes()
    write_atomically(build / TOKENIZER_NAME, tokenizer)
    ModelCard(
        agent_id=agent_id,
        family="sentence_head",
        params=dict(KNOWN_GOOD_HEAD),
        context_length=encoder.files.max_length,
        vocab=(),
        metrics=CardMetrics(validation_loss=float("nan"), unigram_loss=float("nan")),
        task="sentiment",
        labels=tuple(labels),
        files={TOKENIZER_NAME: sha256_of(build / TOKENIZER_NAME)},
    ).write(build)
    move = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        build,
        sha256_of(build / "model.onnx"),
        NoRegistry(),
    )
    return move.deployment


def deploy_reward(home: Home, agent_id: str, seed=0) -> Path:
    """An untrained reward model served as reward_model serves one: its graph (features to a
    1-5 score) and the agent's reward.json naming it and the encoder its vectors come from."""
    import json

    from thunder_dagster.deployments.pointers import REWARD_NAME
    from thunder_dagster.modeling.classifiers import KNOWN_GOOD_HEAD
    from thunder_dagster.modeling.heads import FEATURES, SCORE, head_graph
    from thunder_dagster.modeling.rewards import build_reward_head

    encoder = sentence_encoder(str(home.encoder_cache_dir))
    keras.utils.set_random_seed(seed)
    head = build_reward_head(KNOWN_GOOD_HEAD, 3 * encoder.dimensions)
    graph = home.models_dir(agent_id) / "rewards" / f"untrained-{seed}" / "reward.onnx"
    proto = head_graph(head, KNOWN_GOOD_HEAD["activation"], SCORE, FEATURES)
    write_atomically(graph, proto.SerializeToString())
    pointer = {
        "agent_id": agent_id,
        "version": graph.parent.name,
        "onnx_path": str(graph),
        "onnx_sha256": sha256_of(graph),
        "encoder": encoder.version,
    }
    write_atomically(home.deployments_dir(agent_id) / REWARD_NAME, json.dumps(pointer).encode())
    return graph


def log(store, n, at, agent="acme", score=None, **fields):
    ids = []
    for i in range(n):
        values = {
            "agent_id": agent,
            "user_id": f"u{i}",
            "variant": "champion",
            "model_version": "1.0.0",
            "prompt": PHRASES[i % 3][:8],
            "response": PHRASES[i % 3][8:] + PHRASES[(i + 1) % 3],
            "confidence": 0.7,
            "fallback": False,
            "latency_ms": 1.0,
        } | fields
        query_id = store.log_query(QueryRecord(**values), at=at + timedelta(seconds=i))
        if score is not None:
            store.add_feedback(query_id, score(i) if callable(score) else score)
        ids.append(query_id)
    return ids


def analyse(home, instance, day: str, agent="acme"):
    return dg.materialize(
        [feedback.query_log_stats, feedback.training_triggers],
        partition_key=dg.MultiPartitionKey({"agent": agent, "day": day}),
        instance=instance,
        resources=resources(home),
    )


TOPICS = {
    "baking": ["the bread rose in the oven", "knead the dough with flour", "bake the cake"],
    "sailing": ["the ship left the harbour", "raise the sail at dawn", "the boat crossed the sea"],
    "music": ["the violin played a tune", "sing the chorus again", "the drums kept the beat"],
}


def topic_examples(copies: int = 8) -> tuple[list[str], list[str]]:
    """Texts and their topic labels: each topic's phrases on `copies` days, a sentence
    encoder's vectors tell them apart."""
    texts, labels = [], []
    for label, phrases in TOPICS.items():
        for n in range(copies):
            for phrase in phrases:
                texts.append(f"{phrase}, day {n}")
                labels.append(label)
    return texts, labels


@functools.cache
def sentence_encoder(cache_dir: str):
    from thunder_dagster.retrieval.encoder import EncoderFiles, SentenceEncoder

    return SentenceEncoder(EncoderFiles.packaged(), Path(cache_dir))


def index_agent(home: Home, agent_id: str, texts: dict[str, str], category="reference") -> str:
    """The agent's retrieval index over `texts` (filename -> text) as the ingest path builds
    it: 512-character chunks, embedded, indexed and pointed at. Returns the index version."""
    from thunder_dagster.retrieval.index import build_index, index_version, point_at
    from thunder_dagster.retrieval.vectors import chunks_of

    chunks = [c for filename, text in texts.items() for c in chunks_of(text, filename, category)]
    encoder = sentence_encoder(str(home.encoder_cache_dir))
    version = index_version(encoder.version, chunks)
    folder = home.retrieval_dir(agent_id) / "indexes" / version
    if not folder.is_dir():
        vectors = encoder.encode([chunk.text for chunk in chunks])
        build_index(folder, agent_id, encoder.version, chunks, vectors)
    point_at(home.retrieval_dir(agent_id), version)
    return version


def webhook_receiver():
    """An HTTP server on loopback that keeps every JSON body POSTed to it: (server, bodies).
    The caller shuts the server down."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received
