"""Speaker attribution on tinyshakespeare: a classification task no one here labelled.

    .venv/bin/python bench/classification.py [--speakers 10] [--trials 8] [--seeds 0 1 2]

Each speech is a text and the name before it its label; the speakers with the most speeches
are kept. Both arms get the same split (by a hash of each speech within its speaker, as the
product splits labelled uploads) and use it the same way: they learn from the training part
and choose their settings on the validation part; the test part is seen once, at the end.

- thunder: the product's classifier core, a head on the frozen sentence encoder's vectors,
  Optuna TPE over seed 002's space, scored through its exported ONNX graph (encoder, head,
  softmax) on onnxruntime;
- reference: TF-IDF (word 1-2 grams) with logistic regression (scikit-learn), its C chosen
  on the validation part from a fixed grid.

Prints accuracy and macro F1 per seed and arm, their ratio, and the latency of one text
through the exported graph at batch 1 (tokenizer included).
"""

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = REPO.parent / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, speech) for every block of tinyshakespeare: a NAME: line, then its lines."""
    found = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) >= 2 and lines[0].endswith(":"):
            found.append((lines[0][:-1].strip(), " ".join(line.strip() for line in lines[1:])))
    return found


def reference(split_texts, split) -> tuple[float, float, float]:
    """TF-IDF + logistic regression; C chosen on validation. Returns (accuracy, macro F1, C)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    train, validation, test = split_texts
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(train)
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, split.train_y)
        score = f1_score(
            split.validation_y, model.predict(vectorizer.transform(validation)), average="macro"
        )
        if best is None or score > best[0]:
            best = (score, c, model)
    _, c, model = best
    predicted = model.predict(vectorizer.transform(test))
    return (
        float(accuracy_score(split.test_y, predicted)),
        float(f1_score(split.test_y, predicted, average="macro")),
        c,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    import onnxruntime
    from sklearn.metrics import accuracy_score, f1_score

    from thunder_dagster.modeling.classifiers import split_labelled, train_classifier
    from thunder_dagster.modeling.heads import classifier_graph, head_graph, run_classifier
    from thunder_dagster.retrieval.encoder import EncoderFiles, SentenceEncoder

    found = speeches(CORPUS.read_text())
    top = {name for name, _ in Counter(name for name, _ in found).most_common(args.speakers)}
    kept = [(name, speech) for name, speech in found if name in top]
    texts, labels = [speech for _, speech in kept], [name for name, _ in kept]
    print(f"{len(kept)} speeches of {len(top)} speakers: {', '.join(sorted(top))}")
    with tempfile.TemporaryDirectory() as scratch:
        encoder = SentenceEncoder(EncoderFiles.packaged(), Path(scratch), threads=2)
        started = time.perf_counter()
        vectors = encoder.encode(texts)
        print(f"encoded in {time.perf_counter() - started:.0f} s")
        split = split_labelled(texts, labels, vectors)
        parts = tuple([texts[row] for row in rows] for rows in split.rows)
        print(
            f"split: {len(split.train_y)} train, {len(split.validation_y)} validation, "
            f"{len(split.test_y)} test speeches"
        )
        print(f"{'seed':>4} {'arm':<34} {'accuracy':>9} {'macro F1':>9}")
        rows = []
        for seed in args.seeds:
            model, result = train_classifier(split, trials=args.trials, seed=seed)
            graph = classifier_graph(
                encoder.graph_path, head_graph(model, result.params["activation"])
            )
            path = Path(scratch) / f"classifier-{seed}.onnx"
            path.write_bytes(graph.SerializeToString())
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            probabilities = run_classifier(session, encoder.tokens(parts[2]))
            predicted = probabilities.argmax(-1)
            ours = (
                float(accuracy_score(split.test_y, predicted)),
                float(f1_score(split.test_y, predicted, average="macro")),
            )
            theirs = reference(parts, split)
            rows.append((ours, theirs))
            named = f"TF-IDF + logistic regression (C={theirs[2]:g})"
            for arm, (accuracy, f1) in (
                ("thunder (encoder + searched head)", ours),
                (named, theirs[:2]),
            ):
                print(f"{seed:>4} {arm:<34} {accuracy:>9.3f} {f1:>9.3f}")
        ours_acc, ours_f1 = (statistics.mean(row[0][k] for row in rows) for k in (0, 1))
        theirs_acc, theirs_f1 = (statistics.mean(row[1][k] for row in rows) for k in (0, 1))
        verdict = "met" if ours_f1 > theirs_f1 else "not met"
        print(
            f"mean over {len(rows)} seeds: thunder accuracy {ours_acc:.3f}, macro F1 "
            f"{ours_f1:.3f}; reference {theirs_acc:.3f}, {theirs_f1:.3f}; macro F1 ratio "
            f"{ours_f1 / theirs_f1:.3f}x (target: above 1.0x: {verdict})"
        )
        tokens = encoder.tokens(parts[2][:200])
        timings = []
        for ids in tokens:
            begun = time.perf_counter()
            run_classifier(session, [ids])
            timings.append((time.perf_counter() - begun) * 1000)
        p50, p99 = np.percentile(timings, [50, 99])
        print(
            f"classify at batch 1 through the exported graph: p50 {p50:.2f} ms, p99 "
            f"{p99:.2f} ms over {len(timings)} test speeches"
        )


if __name__ == "__main__":
    main()
