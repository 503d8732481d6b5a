"""Model quality for the compute spent, three arms on the same text and the same clock.

    .venv/bin/python bench/training.py --minutes 2 10 [--arms reference core product]

tinyshakespeare is split as the product splits one document: the last 10% is the test text,
the 10% before it validation, the rest training (with a 512-character gap between blocks).
Every arm is scored on that test text, over every back-to-back window of its context length,
in nats per character, the way nanoGPT evaluates. Per budget of M minutes:

- reference: a plain Keras transformer with nanoGPT's documented CPU configuration (4 layers,
  4 heads, 128 wide, context 64, batch 12, AdamW at 1e-3, no dropout), trained here on the
  training split for M minutes of wall clock. Written in this file, sharing no model code with
  thunder-dagster.
- core: thunder-dagster's modeling core called directly (TPE search for its share of the budget,
  then the final training), on the same training and validation splits.
- product: the path a user runs. The training and validation text (the first 90%) uploaded as
  three documents of one agent into a fresh THUNDER_HOME, `thunder ingest`, then
  `thunder train AGENT --minutes M` on the embedded instance, and the deployed model.onnx
  scored with onnxruntime. Its wall clock includes the Dagster run's start-up.

Each row says how long the arm took; one that overran its budget says so.
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
THUNDER = Path(sys.executable).with_name("thunder")
AGENT = "shakespeare"
# Over budget by more than this, a row says it overran (an epoch in flight is finished).
OVERRUN_TOLERANCE = 1.05


def windows_loss(logits_of, ids: np.ndarray, context: int, batch: int = 64) -> float:
    """Mean cross-entropy over every back-to-back window of `ids`; `logits_of(x)` -> logits."""
    count = (len(ids) - 1) // context
    starts = np.arange(count) * context
    total, n = 0.0, 0
    for first in range(0, count, batch):
        positions = starts[first : first + batch, None] + np.arange(context + 1)
        windows = ids[positions]
        x, y = windows[:, :-1], windows[:, 1:]
        logits = np.asarray(logits_of(x), dtype=np.float64)
        peak = logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(logits - peak).sum(-1)) + peak[..., 0]
        target = np.take_along_axis(logits, y[..., None], -1)[..., 0]
        total += float((log_norm - target).sum())
        n += target.size
    return total / n


def nanogpt_model(vocab_size: int, context: int = 64, width: int = 128, layers: int = 4):
    """nanoGPT's GPT, pre-norm blocks, as plain Keras layers."""
    from thunder_dagster.modeling.backend import keras

    class AddPositions(keras.layers.Layer):
        def build(self, shape):
            self.table = self.add_weight(shape=(context, width), initializer="random_normal")

        def call(self, x):
            return x + self.table[None]

    tokens = keras.Input((context,), dtype="int32")
    x = AddPositions()(keras.layers.Embedding(vocab_size, width)(tokens))
    for _ in range(layers):
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.MultiHeadAttention(num_heads=4, key_dim=width // 4)(
            h, h, use_causal_mask=True
        )
        x = x + h
        h = keras.layers.LayerNormalization()(x)
        h = keras.layers.Dense(4 * width, activation="gelu")(h)
        x = x + keras.layers.Dense(width)(h)
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(tokens, keras.layers.Dense(vocab_size)(x))


def reference_arm(data, minutes: float) -> dict:
    from thunder_dagster.modeling.backend import keras

    keras.utils.set_random_seed(0)
    context, batch = 64, 12
    model = nanogpt_model(data.vocab_size, context)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    started = time.monotonic()
    deadline = started + minutes * 60

    class Deadline(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, number, logs=None):
            self.steps += 1
            if time.monotonic() >= deadline:
                self.model.stop_training = True

    clock = Deadline()

    # Batches drawn at random offsets, 200 at a time, fed by fit (its loop runs compiled, as
    # nanoGPT's does), stopped at the deadline after the batch in flight.
    while time.monotonic() < deadline:
        starts = rng.integers(0, len(data.train) - context - 1, size=200 * batch)
        windows = data.train[starts[:, None] + np.arange(context + 1)]
        model.fit(
            windows[:, :-1],
            windows[:, 1:],
            batch_size=batch,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[clock],
        )
    seconds = time.monotonic() - started
    loss = windows_loss(lambda x: model(x, training=False), data.test, context)
    return {"loss": loss, "seconds": seconds, "detail": f"{clock.steps} steps of batch {batch}"}


def core_arm(data, minutes: float) -> dict:
    from thunder_dagster.jobs.training import SEARCH_SHARE
    from thunder_dagster.modeling.models import train_best
    from thunder_dagster.modeling.search import SearchSettings
    from thunder_dagster.modeling.training import Budget
    from thunder_dagster.modeling.tuning import run_search

    started = time.monotonic()
    settings = SearchSettings(
        trials=100,
        minutes=minutes * SEARCH_SHARE,
        budget=Budget(epochs=3, steps_per_epoch=100, batch_size=128, validation_windows=128),
    )
    with tempfile.TemporaryDirectory() as folder:
        search = run_search(
            data, settings, f"sqlite:///{folder}/optuna.db", "bench", Path(folder) / "trials"
        )
        searched = time.monotonic() - started
        model, history, _ = train_best(
            search,
            data,
            Budget(
                epochs=1000,
                steps_per_epoch=100,
                batch_size=128,
                max_seconds=minutes * 60 - searched,
                validation_windows=128,
                decay_to=0.1,
            ),
            seed=0,
        )
        seconds = time.monotonic() - started
        context = int(search.best_params["context_length"])
        loss = windows_loss(lambda x: model(x, training=False), data.test, context)
    best = search.best_params
    return {
        "loss": loss,
        "seconds": seconds,
        "detail": f"search {searched:.0f} s, trials {search.counts}, best {best['family']} "
        f"h{best['hidden_size']} l{best['layers']} ctx{context}, "
        f"{len(history.epochs)} final epochs",
    }


def product_arm(uploaded: str, test_ids_of, minutes: float) -> dict:
    """Upload, ingest and train through the CLI; score the deployed ONNX file."""
    import onnxruntime

    from thunder_dagster.deployments.pointers import read_pointer
    from thunder_dagster.home import Home
    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.modeling.graphs import INPUT_NAME, OUTPUT_NAME
    from thunder_dagster.modeling.text import Vocabulary

    with tempfile.TemporaryDirectory() as folder:
        home = Home.resolve(Path(folder) / "thunder")
        env = {
            **os.environ,
            "THUNDER_HOME": str(home.root),
            "DAGSTER_HOME": str(home.root / "dagster"),
        }
        (home.root / "dagster").mkdir(parents=True)
        (home.root / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
        home.create_agent(AGENT)
        third = len(uploaded) // 3
        for number in range(3):
            part = uploaded[number * third : (number + 1) * third if number < 2 else None]
            path = home.category_dir(AGENT, "reference") / f"shakespeare_{number + 1}.txt"
            path.write_text(part)
        subprocess.run([str(THUNDER), "ingest", AGENT], env=env, check=True, capture_output=True)
        started = time.monotonic()
        trained = subprocess.run(
            [str(THUNDER), "train", AGENT, "--minutes", str(minutes)],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
        if trained.returncode != 0:
            raise RuntimeError(f"thunder train failed:\n{trained.stdout}\n{trained.stderr}")
        deployment = read_pointer(home.deployments_dir(AGENT))
        card = ModelCard.read(deployment.model_dir)
        session = onnxruntime.InferenceSession(
            deployment.onnx_path, providers=["CPUExecutionProvider"]
        )
        ids = test_ids_of(Vocabulary(card.vocab))
        loss = windows_loss(
            lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.int32)})[0],
            ids,
            card.context_length,
        )
        _, own = card.reported_loss()
    return {
        "loss": loss,
        "seconds": seconds,
        "detail": f"{card.family} h{card.params.get('hidden_size')} l{card.params.get('layers')} "
        f"ctx{card.context_length}; its own test split {own:.3f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument(
        "--arms", nargs="+", default=["reference", "core", "product"], help="which arms to run"
    )
    arguments = parser.parse_args()
    from thunder_dagster.modeling.text import encode_split, split_documents, unigram_loss

    text = CORPUS.read_text()
    split = split_documents([text])
    data = encode_split(split)
    uploaded = text[: len(text) - len(split.test)]
    print(
        f"tinyshakespeare: {len(data.train)} train, {len(data.validation)} validation, "
        f"{len(data.test)} test characters; unigram baseline on test "
        f"{unigram_loss(data.train, data.test, data.vocab_size):.3f} nats/char",
        flush=True,
    )
    rows = []
    for minutes in arguments.minutes:
        for arm in arguments.arms:
            if arm == "reference":
                row = reference_arm(data, minutes)
            elif arm == "core":
                row = core_arm(data, minutes)
            else:
                row = product_arm(uploaded, lambda v: v.encode(split.test), minutes)
            over = row["seconds"] > minutes * 60 * OVERRUN_TOLERANCE
            row |= {"arm": arm, "minutes": minutes, "overran": over}
            rows.append(row)
            print(
                f"{minutes:g} min {arm:>9}: {row['loss']:.3f} nats/char in {row['seconds']:.0f} s"
                + (" (OVERRAN its budget)" if over else "")
                + f"; {row['detail']}",
                flush=True,
            )
    print(f"\n{'budget':>7} {'arm':>9} {'test loss':>10} {'seconds':>8} {'vs reference':>13}")
    for row in rows:
        reference = next(
            (r for r in rows if r["arm"] == "reference" and r["minutes"] == row["minutes"]), None
        )
        ratio = f"{row['loss'] / reference['loss']:.3f}x" if reference else "n/a"
        mark = " overran" if row["overran"] else ""
        print(
            f"{row['minutes']:>6g}m {row['arm']:>9} {row['loss']:>10.3f} "
            f"{row['seconds']:>8.0f} {ratio:>13}{mark}"
        )
    print("(a ratio below 1 is a lower loss than the reference's: ahead of it)")
    if any(math.isnan(row["loss"]) for row in rows):
        sys.exit("a loss is NaN")


if __name__ == "__main__":
    main()
