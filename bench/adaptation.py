"""Adapters on the instruct base, measured on this machine:

    .venv/bin/python bench/adaptation.py [--steps 6] [--rounds 3] [--sections training,serving]

1. Training: the whole base in Keras with a rank-8 adapter on every projection, trained on
   the sample agent's question set laid out as served prompts (samples/questions.json, each
   answer the documents' sentence that holds its fact), four examples a step. The first step's
   seconds (TensorFlow traces the step once per process), then tokens per second forward and
   backward over `--steps` steps, and how many such examples fit in 10 minutes at that rate.
2. Serving: the same grounded prompt answered by the base's graph, by the adapted graph with
   no adapter (zeros), and by the adapted graph with a rank-8 adapter on every projection:
   prefill seconds and decode tokens per second over 32 greedy tokens, `--rounds` rounds
   alternated, medians and spread (max - min). Then the adapter's size on disk and the
   seconds to load it (hash check, shape check, the graph's inputs laid out).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = REPO / "samples"
DECODE_TOKENS = 32
BATCH = 4


def sample_lessons():
    from thunder_dagster.adapters.examples import Lesson
    from thunder_dagster.instruct.grounding import sentences

    texts = [path.read_text() for path in sorted(SAMPLES.glob("src/*.txt"))]
    texts += [path.read_text() for path in sorted(SAMPLES.glob("agent/*/*.txt"))]
    items = json.loads((SAMPLES / "questions.json").read_text())["questions"]
    lessons = []
    for item in items:
        holding = [s for text in texts for s in sentences(text) if item["paragraph"] in s]
        if holding:
            lessons.append(Lesson(item["question"], tuple(texts), holding[0]))
    return lessons


def training(steps: int) -> None:
    from thunder_dagster.adapters.examples import answer_example
    from thunder_dagster.adapters.keras_base import AdapterShape, KerasBase
    from thunder_dagster.adapters.training import AdapterBudget, AdapterTrainer
    from thunder_dagster.instruct.base import BaseFile
    from thunder_dagster.instruct.reference import float_weights
    from thunder_dagster.instruct.tokens import BaseTokenizer

    base = BaseFile()
    tokenizer = BaseTokenizer(base)
    examples = [
        answer_example(tokenizer, "sample", lesson, "teacher", 1024) for lesson in sample_lessons()
    ]
    examples = [e for e in examples if e is not None]
    mean_tokens = statistics.mean(len(e.ids) for e in examples)
    started = time.perf_counter()
    model = KerasBase(float_weights(base), AdapterShape(8, 16.0), positions=1024)
    built = time.perf_counter() - started
    trainer = AdapterTrainer(model, 1e-4, tokenizer.end_id)
    first = trainer.fit(examples, AdapterBudget(1, 3600, BATCH))
    report = trainer.fit(examples, AdapterBudget(steps, 3600, BATCH), seed=1)
    rate = report.tokens_per_second
    print(f"\n## Training (whole base, rank 8 on all 7 projections, {BATCH} examples a step)")
    print(f"examples: {len(examples)} grounded answers, {mean_tokens:.0f} tokens each on average")
    print(f"Keras model built from the dequantized weights: {built:.1f} s")
    print(f"first step (traced once per process): {first.seconds:.1f} s")
    print(f"{report.steps} steps, {report.tokens} tokens: {rate:.0f} tokens/s forward and backward")
    print(f"examples in 10 minutes at that rate: {600 * rate / mean_tokens:.0f}")


def decode_round(model, ids: list[int]) -> dict:
    import numpy as np

    started = time.perf_counter()
    logits, cache = model._run(ids, model._empty_cache(len(ids) + DECODE_TOKENS + 1), 0)
    prefill = time.perf_counter() - started
    past, started = len(ids), time.perf_counter()
    for _ in range(DECODE_TOKENS):
        logits[[0, 2]] = -np.inf
        logits, cache = model._run([int(np.argmax(logits))], cache, past)
        past += 1
    return {"prefill": prefill, "decode": DECODE_TOKENS / (time.perf_counter() - started)}


def serving(rounds: int) -> None:
    import numpy as np

    from thunder_dagster.adapters.examples import prompt_ids
    from thunder_dagster.adapters.files import Adapter, graph_feeds, widths
    from thunder_dagster.adapters.keras_base import AdapterShape
    from thunder_dagster.instruct.base import PROJECTIONS, BaseFile
    from thunder_dagster.instruct.builds import POSITIONS, session_for
    from thunder_dagster.instruct.decoding import BaseModel
    from thunder_dagster.instruct.graphs import build_graph
    from thunder_dagster.instruct.tokens import BaseTokenizer

    base = BaseFile()
    tokenizer = BaseTokenizer(base)
    spec = base.spec
    ids = prompt_ids(tokenizer, "sample", sample_lessons()[0])
    plain = BaseModel(
        session_for(build_graph(base, positions=POSITIONS).SerializeToString(), 2),
        tokenizer,
        spec,
        POSITIONS,
    )
    graph = build_graph(base, positions=POSITIONS, adapted=True).SerializeToString()
    adapted = BaseModel(session_for(graph, 2), tokenizer, spec, POSITIONS)
    rng = np.random.default_rng(0)
    arrays = {
        f"{layer}.{name}": (
            rng.normal(0, 0.02, (widths(spec)[name][0], 8)).astype(np.float32),
            rng.normal(0, 0.02, (8, widths(spec)[name][1])).astype(np.float32),
        )
        for layer in range(spec.layers)
        for name in PROJECTIONS
    }
    adapter = Adapter(AdapterShape(8, 16.0), arrays)
    with tempfile.TemporaryDirectory() as folder:
        manifest = adapter.save(Path(folder))
        started = time.perf_counter()
        feeds = graph_feeds(Adapter.load(Path(folder), spec), spec)
        load_seconds = time.perf_counter() - started
    arms = {
        "base graph": plain,
        "adapted graph, no adapter": adapted.with_adapter(graph_feeds(None, spec)),
        "adapted graph, rank-8 adapter": adapted.with_adapter(feeds),
    }
    results = {name: [] for name in arms}
    for model in arms.values():
        decode_round(model, ids)  # warm-up
    for _ in range(rounds):
        for name, model in arms.items():
            results[name].append(decode_round(model, ids))
    print(f"\n## Serving ({len(ids)} prompt tokens, {DECODE_TOKENS} greedy tokens, 2 threads)")
    print(f"{'arm':32} {'prefill s (spread)':>20} {'decode tok/s (spread)':>22}")
    for name, runs in results.items():
        prefill = [r["prefill"] for r in runs]
        decode = [r["decode"] for r in runs]
        print(
            f"{name:32} {statistics.median(prefill):>11.3f} ({max(prefill) - min(prefill):.3f})"
            f" {statistics.median(decode):>13.1f} ({max(decode) - min(decode):.1f})"
        )
    print(
        f"rank-8 adapter on all projections: {manifest['parameters']:,} parameters, "
        f"{manifest['bytes'] / 2**20:.1f} MiB on disk, loaded in {load_seconds * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sections", default="training,serving")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    print(f"# bench/adaptation.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if "serving" in sections:
        serving(args.rounds)
    if "training" in sections:
        training(args.steps)


if __name__ == "__main__":
    main()
