"""Model quality for the compute spent, three arms on the same text and the same clock.

    .venv/bin/python bench/training.py --minutes 2 10 [--arms reference core product]
        [--seeds 0 1 2]

The last 10% of tinyshakespeare is the test text of every arm, never uploaded. The first 90%
is uploaded as three documents of one agent and ingested once; the product's own split of
them (its training, validation and test splits, as `thunder train` makes them) is what every
arm trains and validates on, so the three arms learn from the same characters. Every arm is
scored on the test text over every back-to-back window of its context length, in nats per
character, the way nanoGPT evaluates. Per budget of M minutes:

- reference: a plain Keras transformer with nanoGPT's documented CPU configuration (4 layers,
  4 heads, 128 wide, context 64, batch 12, no dropout) and its whole training recipe: 100
  warm-up steps, a cosine from 1e-3 to 1e-4 (over the M minutes, where nanoGPT's runs over its
  iterations), AdamW with beta2 0.99 and weight decay 0.1, gradients clipped at norm 1.0, and
  the weights with the best validation loss (every 250 steps and at the end) kept. Trained
  here on the training split for M minutes of wall clock. Written in this file, sharing no
  model code with thunder-dagster.
- core: thunder-dagster's modeling core called directly, with the configs `thunder train`
  builds (the search's share of the budget, then the final training, both ending where the
  product's would).
- product: the path a user runs, in a fresh THUNDER_HOME holding the same three uploads:
  `thunder ingest`, then `thunder train AGENT --minutes M` on the embedded instance, and the
  deployed model.onnx scored with onnxruntime. Its wall clock is the whole command's: the
  Dagster run's start-up, the ingest assets, the search, the training, the export and the
  deployment.

Each arm runs once per seed (three by default). Each row says how long the arm took; one
that overran its budget says so. The summary gives each arm's mean and spread (max - min) over
its runs; an arm is ahead of or behind the reference only by more than the larger spread,
else tied.
"""

import argparse
import math
import os
import statistics
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


def sequences_loss(logits, targets: np.ndarray) -> float:
    """Mean cross-entropy of `logits` (windows, positions, vocabulary) at `targets`."""
    logits = np.asarray(logits, dtype=np.float64)
    peak = logits.max(-1, keepdims=True)
    log_norm = np.log(np.exp(logits - peak).sum(-1)) + peak[..., 0]
    target = np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return float((log_norm - target).mean())


def windows_loss(logits_of, ids: np.ndarray, context: int, batch: int = 64) -> float:
    """Mean cross-entropy over every back-to-back window of `ids`; `logits_of(x)` -> logits."""
    count = (len(ids) - 1) // context
    starts = np.arange(count) * context
    total, n = 0.0, 0
    for first in range(0, count, batch):
        positions = starts[first : first + batch, None] + np.arange(context + 1)
        windows = ids[positions]
        x, y = windows[:, :-1], windows[:, 1:]
        total += sequences_loss(logits_of(x), y) * y.size
        n += y.size
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


# nanoGPT's shakespeare-char schedule and optimizer (config/train_shakespeare_char.py and
# train.py, as read there): 100 warm-up steps, a cosine from 1e-3 down to 1e-4, AdamW with
# beta2 0.99 and weight decay 0.1, gradients clipped at norm 1.0, and the checkpoint with the
# best validation loss kept. Its cosine runs over max_iters; here over the minutes given.
LEARNING_RATE, MIN_LEARNING_RATE, WARMUP_STEPS = 1e-3, 1e-4, 100
EVAL_EVERY, EVAL_WINDOWS = 250, 200


def nanogpt_rate(step: int, elapsed_fraction: float) -> float:
    """Linear warm-up by steps, then the cosine by the share of the budget spent."""
    if step < WARMUP_STEPS:
        return LEARNING_RATE * (step + 1) / WARMUP_STEPS
    ratio = min(1.0, max(0.0, elapsed_fraction))
    cosine = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return MIN_LEARNING_RATE + cosine * (LEARNING_RATE - MIN_LEARNING_RATE)


def reference_arm(data, minutes: float, seed: int) -> dict:
    from thunder_dagster.modeling.backend import keras

    keras.utils.set_random_seed(seed)
    context, batch = 64, 12
    model = nanogpt_model(data.vocab_size, context)
    optimizer = keras.optimizers.AdamW(
        learning_rate=LEARNING_RATE, beta_2=0.99, weight_decay=0.1, global_clipnorm=1.0
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(seed)
    # A fixed sample of validation windows, as nanoGPT's estimate_loss draws eval_iters
    # batches: the checkpoint kept is the one that scores best on it.
    starts = rng.integers(0, len(data.validation) - context - 1, size=EVAL_WINDOWS)
    held = data.validation[starts[:, None] + np.arange(context + 1)]
    started = time.monotonic()
    budget = minutes * 60
    deadline = started + budget

    class Schedule(keras.callbacks.Callback):
        steps = 0
        best = (math.inf, None, 0)  # validation loss, weights, step

        def on_train_batch_begin(self, number, logs=None):
            fraction = (time.monotonic() - started) / budget
            self.model.optimizer.learning_rate.assign(nanogpt_rate(self.steps, fraction))

        def on_train_batch_end(self, number, logs=None):
            self.steps += 1
            if self.steps % EVAL_EVERY == 0:
                self.evaluate()
            if time.monotonic() >= deadline:
                self.model.stop_training = True

        def evaluate(self):
            loss = sequences_loss(self.model(held[:, :-1], training=False), held[:, 1:])
            if loss < self.best[0]:
                self.best = (loss, self.model.get_weights(), self.steps)

    schedule = Schedule()

    # Batches drawn at random offsets, 200 at a time, fed by fit (its loop runs compiled, as
    # nanoGPT's does), stopped at the deadline after the batch in flight.
    while time.monotonic() < deadline:
        offsets = rng.integers(0, len(data.train) - context - 1, size=200 * batch)
        windows = data.train[offsets[:, None] + np.arange(context + 1)]
        model.fit(
            windows[:, :-1],
            windows[:, 1:],
            batch_size=batch,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[schedule],
        )
    schedule.evaluate()  # the last weights are a checkpoint too
    seconds = time.monotonic() - started
    _, weights, kept = schedule.best
    model.set_weights(weights)
    loss = windows_loss(lambda x: model(x, training=False), data.test, context)
    return {
        "loss": loss,
        "seconds": seconds,
        "detail": f"{schedule.steps} steps of batch {batch}, the best validation at step {kept}",
    }


def core_arm(data, minutes: float, seed: int) -> dict:
    from thunder_dagster.assets.models import TrainingConfig
    from thunder_dagster.assets.tuning import SearchConfig
    from thunder_dagster.modeling.models import train_best
    from thunder_dagster.modeling.tuning import run_search
    from thunder_dagster.times import utc_now
    from thunder_dagster.training_plan import training_ops

    # The product's own configs, built as `thunder train --minutes` builds them (the same
    # share, end times and defaults), so the two thunder arms cannot drift apart.
    ops = training_ops(None, minutes, started=utc_now())
    started = time.monotonic()
    search_config = SearchConfig(**ops["tpe_trials"]["config"], seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        search = run_search(
            data,
            search_config.settings(),
            f"sqlite:///{folder}/optuna.db",
            "bench",
            Path(folder) / "trials",
        )
        searched = time.monotonic() - started
        final = TrainingConfig(**ops["keras_model"]["config"], seed=seed)
        model, history, _ = train_best(search, data, final.budget(), final.seed, final.warm_start)
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


def prepared_home(folder: str, uploaded: str) -> tuple:
    """A THUNDER_HOME with `uploaded` as three documents of the agent, ingested; and its env."""
    from thunder_dagster.home import Home

    home = Home.resolve(Path(folder) / "thunder")
    env = {**os.environ, "THUNDER_HOME": str(home.root), "DAGSTER_HOME": str(home.root / "dagster")}
    (home.root / "dagster").mkdir(parents=True)
    (home.root / "dagster" / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    home.create_agent(AGENT)
    third = len(uploaded) // 3
    for number in range(3):
        part = uploaded[number * third : (number + 1) * third if number < 2 else None]
        path = home.category_dir(AGENT, "reference") / f"shakespeare_{number + 1}.txt"
        path.write_text(part)
    subprocess.run([str(THUNDER), "ingest", AGENT], env=env, check=True, capture_output=True)
    return home, env


def product_arm(uploaded: str, test_text: str, minutes: float) -> dict:
    """Upload, ingest and train through the CLI; score the deployed ONNX file."""
    import onnxruntime

    from thunder_dagster.deployments.pointers import read_pointer
    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.modeling.graphs import INPUT_NAME, OUTPUT_NAME
    from thunder_dagster.modeling.text import Vocabulary

    with tempfile.TemporaryDirectory() as folder:
        home, env = prepared_home(folder, uploaded)
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
        ids = Vocabulary(card.vocab).encode(test_text)
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


def product_split(uploaded: str, test_text: str):
    """The product's own training and validation splits of the uploads, with the bench's test
    text (encoded with the training split's vocabulary) as the test split."""
    from thunder_dagster.documents.datasets import latest_dataset
    from thunder_dagster.modeling.text import EncodedText, encoded_dataset

    with tempfile.TemporaryDirectory() as folder:
        home, _ = prepared_home(folder, uploaded)
        own = encoded_dataset(latest_dataset(home.processed_dir(AGENT)), 0.1)
    return EncodedText(own.vocabulary, own.train, own.validation, own.vocabulary.encode(test_text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument(
        "--arms", nargs="+", default=["reference", "core", "product"], help="which arms to run"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="one run of each arm per seed (the product's CLI trains with its own seed, 0: "
        "its runs differ by their timing)",
    )
    arguments = parser.parse_args()
    from thunder_dagster.modeling.text import split_documents, unigram_loss

    text = CORPUS.read_text()
    test_text = split_documents([text]).test
    uploaded = text[: len(text) - len(test_text)]
    data = product_split(uploaded, test_text)
    print(
        f"tinyshakespeare: {len(uploaded)} characters uploaded as three documents; the "
        f"product's split of them: {len(data.train)} train, {len(data.validation)} validation; "
        f"{len(data.test)} test characters (the last 10%, not uploaded); unigram baseline on "
        f"test {unigram_loss(data.train, data.test, data.vocab_size):.3f} nats/char",
        flush=True,
    )
    rows = []
    for minutes in arguments.minutes:
        for seed in arguments.seeds:
            for arm in arguments.arms:
                if arm == "reference":
                    row = reference_arm(data, minutes, seed)
                elif arm == "core":
                    row = core_arm(data, minutes, seed)
                else:
                    row = product_arm(uploaded, test_text, minutes)
                over = row["seconds"] > minutes * 60 * OVERRUN_TOLERANCE
                row |= {"arm": arm, "minutes": minutes, "seed": seed, "overran": over}
                rows.append(row)
                print(
                    f"{minutes:g} min seed {seed} {arm:>9}: {row['loss']:.3f} nats/char in "
                    f"{row['seconds']:.0f} s"
                    + (" (OVERRAN its budget)" if over else "")
                    + f"; {row['detail']}",
                    flush=True,
                )
    summarize(rows, arguments)
    if any(math.isnan(row["loss"]) for row in rows):
        sys.exit("a loss is NaN")


def summarize(rows: list[dict], arguments) -> None:
    """Per budget and arm: the mean test loss over the seeds, its spread (max - min), and the
    verdict against the reference: ahead or behind only by more than both spreads."""
    print(
        f"\n{'budget':>7} {'arm':>9} {'runs':>5} {'mean loss':>10} {'spread':>7} "
        f"{'seconds':>8} {'vs reference':>13}  verdict"
    )
    for minutes in arguments.minutes:
        by_arm = {
            arm: [r for r in rows if r["arm"] == arm and r["minutes"] == minutes]
            for arm in arguments.arms
        }
        reference = by_arm.get("reference")
        for arm, runs in by_arm.items():
            losses = [r["loss"] for r in runs]
            mean, spread = statistics.mean(losses), max(losses) - min(losses)
            seconds = statistics.mean(r["seconds"] for r in runs)
            ratio, verdict = "n/a", ""
            if reference and arm != "reference":
                theirs = [r["loss"] for r in reference]
                their_mean, their_spread = statistics.mean(theirs), max(theirs) - min(theirs)
                ratio = f"{mean / their_mean:.3f}x"
                gap = their_mean - mean
                if min(len(runs), len(theirs)) < 2:
                    verdict = "one run: no spread to judge a lead by"
                elif abs(gap) <= max(spread, their_spread):
                    verdict = "tied (the lead is within the spread)"
                else:
                    verdict = "ahead" if gap > 0 else "behind"
            mark = " overran" if any(r["overran"] for r in runs) else ""
            print(
                f"{minutes:>6g}m {arm:>9} {len(runs):>5} {mean:>10.3f} {spread:>7.3f} "
                f"{seconds:>8.0f} {ratio:>13}  {verdict}{mark}"
            )
    print(
        "(a ratio below 1 is a lower loss than the reference's; a lead no larger than the "
        "larger of the two arms' spreads is a tie)"
    )


if __name__ == "__main__":
    main()
