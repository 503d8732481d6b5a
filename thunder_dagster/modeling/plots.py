"""PNG plots for asset metadata and MLflow: loss curves, the optimization history and the A/B
comparison."""

import io

PLOT_SIZE = (6.4, 3.6)


def _axes(title: str, xlabel: str, ylabel: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=PLOT_SIZE)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure, axes


def _png(figure, axes, legend: bool = True) -> bytes:
    import matplotlib.pyplot as plt

    if legend:
        axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def loss_curves(
    epochs: list[dict],
    baseline: float | None = None,
    title: str = "",
    test_loss: float | None = None,
) -> bytes:
    """Train and validation loss per epoch, in nats per character, with the final model's test
    loss and the unigram baseline on the test split."""
    figure, axes = _axes(title, "epoch", "loss (nats per character)")
    numbers = [epoch["number"] + 1 for epoch in epochs]
    axes.plot(numbers, [e["train_loss"] for e in epochs], marker="o", label="train")
    axes.plot(numbers, [e["validation_loss"] for e in epochs], marker="o", label="validation")
    if test_loss is not None:
        axes.axhline(test_loss, color="black", linestyle=":", label="test (final model)")
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle="--", label="unigram baseline (test)")
    return _png(figure, axes)


def optimization_history(
    trials: list[dict], title: str = "", unit: str = "nats per character"
) -> bytes:
    """Each trial's validation loss in trial order, and the best so far."""
    figure, axes = _axes(title, "trial", f"validation loss ({unit})")
    done = [t for t in trials if t["value"] is not None]
    colours = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange"}
    for state, colour in colours.items():
        points = [t for t in done if t["state"] == state]
        axes.scatter(
            [t["number"] for t in points], [t["value"] for t in points], color=colour, label=state
        )
    best, running = [], float("inf")
    for trial in sorted(done, key=lambda t: t["number"]):
        if trial["state"] == "COMPLETE":
            running = min(running, trial["value"])
        best.append((trial["number"], running))
    if best:
        axes.step(*zip(*best, strict=True), where="post", color="tab:red", label="best so far")
    return _png(figure, axes)


def ab_comparison(variants: list[dict], title: str = "", measure: str = "positive rate") -> bytes:
    """Each variant's positive rate (or the measure in its place: a classifier's accuracy) and
    mean score (1-5) with their 95% intervals, side by side.

    A variant: {"label", "positive_rate", "positive_rate_ci", "mean_score", "mean_score_ci"}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rates, scores) = plt.subplots(1, 2, figsize=PLOT_SIZE)
    labels = [variant["label"] for variant in variants]
    colours = ["tab:blue", "tab:orange", "tab:green"][: len(variants)]
    for axes, key, ylabel, limit in (
        (rates, "positive_rate", measure, (0, 1)),
        (scores, "mean_score", "mean score", (1, 5)),
    ):
        values = [variant[key] for variant in variants]
        # A variant without rated answers has a value (0) outside its whole-range interval;
        # its bar then gets no error bar below it rather than a negative one.
        errors = [
            [
                max(0.0, value - variant[f"{key}_ci"][0])
                for value, variant in zip(values, variants, strict=True)
            ],
            [
                max(0.0, variant[f"{key}_ci"][1] - value)
                for value, variant in zip(values, variants, strict=True)
            ],
        ]
        axes.bar(labels, values, yerr=errors, capsize=6, color=colours)
        axes.set_ylim(*limit)
        axes.set_ylabel(f"{ylabel} (95% interval)")
        axes.grid(alpha=0.3, axis="y")
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def chunk_projection(vectors, categories: list[str], title: str = "") -> bytes:
    """The chunk vectors on their first two principal components, one colour per category."""
    import numpy as np

    matrix = np.asarray(vectors, np.float64)
    centred = matrix - matrix.mean(axis=0)
    # Principal axes by SVD; fewer than two chunks, or all alike, leave zeros.
    _, _, axes_t = np.linalg.svd(centred, full_matrices=False)
    points = centred @ axes_t[:2].T if len(matrix) > 1 else np.zeros((len(matrix), 2))
    if points.shape[1] < 2:
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    figure, axes = _axes(title, "first principal component", "second principal component")
    labels = np.asarray(categories)
    for category in sorted(set(categories)):
        chosen = points[labels == category]
        axes.scatter(
            chosen[:, 0], chosen[:, 1], s=8, alpha=0.7, label=f"{category} ({len(chosen)})"
        )
    return _png(figure, axes)


def drift_history(days: list[str], p95: list[float], bound: float, title: str = "") -> bytes:
    """The daily p95 drift score with the alert's bound."""
    figure, axes = _axes(title, "day", "drift p95 (standard deviations)")
    axes.plot(days, p95, marker="o", label="p95 drift")
    axes.axhline(bound, color="tab:red", linestyle="--", label=f"alert bound ({bound:g})")
    axes.tick_params(axis="x", labelrotation=45)
    return _png(figure, axes)


def confidence_distributions(labelled: dict[str, list[float]], title: str = "") -> bytes:
    """Each version's answer confidences as a histogram over the same bins (0 to 1)."""
    import numpy as np

    figure, axes = _axes(title, "confidence (mean probability of the chosen characters)", "answers")
    bins = np.linspace(0.0, 1.0, 21)
    for label, values in labelled.items():
        axes.hist(values, bins=bins, alpha=0.55, label=label)
    return _png(figure, axes)


def confusion_matrix(labels: list[str], counts: list[list[int]], title: str = "") -> bytes:
    """A classifier's test split: rows the true label, columns the predicted, each cell its
    count, shaded by the share of its row."""
    import numpy as np

    figure, axes = _axes(title, "predicted", "true")
    axes.grid(False)
    matrix = np.asarray(counts, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    axes.set_xticks(list(ticks), labels, rotation=45, ha="right")
    axes.set_yticks(list(ticks), labels)
    for row in ticks:
        for column in ticks:
            dark = shares[row, column] > 0.5
            axes.text(
                column,
                row,
                int(matrix[row, column]),
                ha="center",
                va="center",
                color="white" if dark else "black",
            )
    return _png(figure, axes, legend=False)
