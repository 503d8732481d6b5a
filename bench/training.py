"""Model quality for the compute spent: TPE search plus final training on tinyshakespeare.

Validation is the last 10% of the text, as nanoGPT splits it; the loss is in nats per character
over every back-to-back window of the validation text. Reference figures on this kind of
2-core machine (from the training issue): nanoGPT's CPU configuration reached 1.886 in 115 s and
1.52 in 632 s; a hand-set 256-unit Keras GRU reached 1.88 after 90 s and 1.65 after 260 s.

    .venv/bin/python bench/training.py --minutes 2 10
"""

import argparse
import tempfile
import time
from pathlib import Path

from thunder_dagster.jobs.training import SEARCH_SHARE
from thunder_dagster.modeling.models import train_best
from thunder_dagster.modeling.search import SearchSettings
from thunder_dagster.modeling.text import encode_documents, sequential_windows, unigram_loss
from thunder_dagster.modeling.training import Budget
from thunder_dagster.modeling.tuning import run_search

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
REFERENCES = {
    2: ("nanoGPT 115 s", 1.886, "Keras GRU-256 90 s", 1.88),
    10: ("nanoGPT 632 s", 1.52, "Keras GRU-256 260 s", 1.65),
}


def full_validation_loss(model, data, context_length):
    x, y = sequential_windows(data.validation, context_length)
    return float(model.evaluate(x, y, batch_size=256, verbose=0))


def one_budget(data, minutes: float, search_share: float) -> dict:
    started = time.monotonic()
    settings = SearchSettings(
        trials=100,
        minutes=minutes * search_share,
        budget=Budget(epochs=3, steps_per_epoch=100, batch_size=128, validation_windows=128),
    )
    with tempfile.TemporaryDirectory() as folder:
        search = run_search(
            data, settings, f"sqlite:///{folder}/optuna.db", "bench", Path(folder) / "trials"
        )
        searched = time.monotonic() - started
        left = minutes * 60 - searched
        model, _, warm = train_best(
            search,
            data,
            Budget(
                epochs=1000,
                steps_per_epoch=100,
                batch_size=128,
                max_seconds=left,
                validation_windows=128,
                decay_to=0.1,
            ),
            seed=0,
            on_epoch=lambda e: print(
                f"  epoch {e.number}: {e.validation_loss:.3f} {e.seconds:.0f} s "
                f"at {time.monotonic() - started:.0f} s",
                flush=True,
            ),
        )
        seconds = time.monotonic() - started
        loss = full_validation_loss(model, data, search.best_params["context_length"])
    return {
        "minutes": minutes,
        "trials": search.counts,
        "best": search.best_params,
        "search_s": searched,
        "total_s": seconds,
        "loss": loss,
        "warm": warm is not None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument("--search-share", type=float, default=SEARCH_SHARE)
    arguments = parser.parse_args()
    data = encode_documents([CORPUS.read_text()])
    print(
        f"tinyshakespeare: {len(data.train)} train, {len(data.validation)} validation chars; "
        f"unigram baseline {unigram_loss(data.train, data.validation, data.vocab_size):.3f}"
    )
    for minutes in arguments.minutes:
        row = one_budget(data, minutes, arguments.search_share)
        reference = REFERENCES.get(round(minutes))
        versus = (
            f"; {reference[0]}: {reference[1]} (ratio {row['loss'] / reference[1]:.3f}), "
            f"{reference[2]}: {reference[3]} (ratio {row['loss'] / reference[3]:.3f})"
            if reference
            else ""
        )
        print(
            f"budget {minutes:g} min: validation loss {row['loss']:.3f} nats/char after "
            f"{row['total_s']:.0f} s (search {row['search_s']:.0f} s, trials {row['trials']}, "
            f"best {row['best']['family']} h{row['best']['hidden_size']} "
            f"l{row['best']['layers']} ctx{row['best']['context_length']}, "
            f"warm start {row['warm']}){versus}",
            flush=True,
        )


if __name__ == "__main__":
    main()
