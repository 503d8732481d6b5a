"""Characters as tokens: the vocabulary, the train/validation/test split and the windows."""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from thunder_dagster.documents.datasets import TrainingDataset

UNKNOWN = "\ufffd"
DOCUMENT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id; id 0 stands for any character the training text never had."""

    tokens: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls((UNKNOWN, *sorted(set(text) - {UNKNOWN})))

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def _index(self) -> dict[str, int]:
        # Built once per vocabulary: the server encodes every prompt with the same one.
        return {token: number for number, token in enumerate(self.tokens)}

    def encode(self, text: str) -> np.ndarray:
        index = self._index
        return np.fromiter((index.get(char, 0) for char in text), dtype=np.int32, count=len(text))

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens[int(number)] for number in ids)


@dataclass(frozen=True)
class EncodedText:
    """A vocabulary (from the training text) with the three splits as token ids: training,
    validation (selects the trial and the best epoch) and test (seen by neither; every reported
    loss and the deployment gate)."""

    vocabulary: Vocabulary
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)


@dataclass(frozen=True)
class TextSplit:
    train: str
    validation: str
    test: str
    by: str  # "documents" (whole documents held out) or "blocks" (the end of the text)


# Whole documents are held out once an agent has this many: fewer, and one document would be
# most of a held-out split.
MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT = 10
# Text left out between the training, validation and test blocks, so that no block's first
# characters continue the sentence the block before it ended on (one chunk).
BLOCK_GAP = 512


def split_documents(texts: Sequence[str], held_out_fraction: float = 0.1) -> TextSplit:
    """Training, validation and test text, the last two `held_out_fraction` of the text each.

    With enough documents (MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT) whole documents are held out, in
    an order fixed by their content hashes, so validation and test are documents the model
    never saw a line of. Otherwise the documents are joined and cut into three contiguous
    blocks, test last and validation before it, with a gap between blocks: on one document
    the test block is the last tenth of it, nanoGPT's held-out text of tinyshakespeare.
    """
    if not 0 < held_out_fraction < 0.5:
        raise ValueError(f"held_out_fraction must be in (0, 0.5), got {held_out_fraction}")
    by_documents = _split_by_documents(texts, held_out_fraction)
    if by_documents is not None:
        return by_documents
    text = DOCUMENT_SEPARATOR.join(texts)
    size = round(len(text) * held_out_fraction)
    gap = min(BLOCK_GAP, len(text) // 100)
    test_start = len(text) - size
    validation_start = test_start - gap - size
    return TextSplit(
        train=text[: max(0, validation_start - gap)],
        validation=text[validation_start : test_start - gap],
        test=text[test_start:],
        by="blocks",
    )


def _split_by_documents(texts: Sequence[str], fraction: float) -> TextSplit | None:
    if len(texts) < MIN_DOCUMENTS_FOR_DOCUMENT_SPLIT:
        return None
    total = sum(len(text) for text in texts)
    order = sorted(texts, key=lambda text: hashlib.sha256(text.encode()).hexdigest())
    held: list[list[str]] = [[], []]  # test, then validation
    sizes = [0, 0]
    rest = iter(order)
    for number, part in enumerate(held):
        for text in rest:
            part.append(text)
            sizes[number] += len(text)
            if sizes[number] >= fraction * total:
                break
    train = list(rest)
    test, validation = held
    # A document of half the text, drawn into a held-out split, would starve the training.
    shares = [size / total for size in sizes]
    if not train or any(share > 2 * fraction for share in shares):
        return None
    return TextSplit(
        DOCUMENT_SEPARATOR.join(train),
        DOCUMENT_SEPARATOR.join(validation),
        DOCUMENT_SEPARATOR.join(test),
        by="documents",
    )


def encode_split(split: TextSplit) -> EncodedText:
    vocabulary = Vocabulary.from_text(split.train)
    return EncodedText(
        vocabulary,
        vocabulary.encode(split.train),
        vocabulary.encode(split.validation),
        vocabulary.encode(split.test),
    )


def encode_documents(texts: Sequence[str], held_out_fraction: float = 0.1) -> EncodedText:
    return encode_split(split_documents(texts, held_out_fraction))


def dataset_documents(csv_path: str | Path) -> list[str]:
    """Each document's text, put back together from its overlapping chunks by their spans."""
    from thunder_dagster.documents.datasets import read_training_dataset

    frame = read_training_dataset(csv_path)
    frame["start"] = frame["start"].astype(int)
    frame["chunk_index"] = frame["chunk_index"].astype(int)
    documents = []
    for _, rows in frame.sort_values(["document_id", "chunk_index"]).groupby(
        "document_id", sort=True
    ):
        text, end = "", 0
        for start, chunk in zip(rows["start"], rows["text"], strict=True):
            text += chunk[max(0, end - start) :]
            end = start + len(chunk)
        documents.append(text)
    return documents


def random_windows(
    ids: np.ndarray, context_length: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` windows at random offsets: inputs and the same windows shifted by one (targets)."""
    if len(ids) <= context_length:
        raise ValueError(
            f"the training text has {len(ids)} characters, fewer than the context length "
            f"{context_length} + 1: upload more documents or lower the context length"
        )
    starts = rng.integers(0, len(ids) - context_length, size=count)
    positions = starts[:, None] + np.arange(context_length + 1)
    windows = ids[positions]
    return windows[:, :-1], windows[:, 1:]


def sequential_windows(
    ids: np.ndarray, context_length: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-back windows over the whole text (evenly thinned to `limit`): the validation set."""
    count = (len(ids) - 1) // context_length
    if count < 1:
        raise ValueError(
            f"the validation text has {len(ids)} characters, too few for one window of "
            f"{context_length}: upload more text or lower the context length"
        )
    starts = np.arange(count) * context_length
    if limit is not None and count > limit:
        starts = starts[np.linspace(0, count - 1, limit).astype(int)]
    positions = starts[:, None] + np.arange(context_length + 1)
    windows = ids[positions]
    return windows[:, :-1], windows[:, 1:]


def unigram_loss(train: np.ndarray, held_out: np.ndarray, vocab_size: int) -> float:
    """Nats per character of held-out text under the training text's character frequencies.

    Add-one smoothing keeps it finite. A model that does no better has learned nothing.
    """
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    log_probabilities = np.log(counts / counts.sum())
    return float(-log_probabilities[held_out].mean())


MIN_VALIDATION_CHARACTERS = 200


class DatasetTooSmallError(ValueError):
    """A dataset whose held-out shares are too short to validate and test a model on."""


def encoded_dataset(dataset: TrainingDataset, validation_fraction: float) -> EncodedText:
    """The dataset's documents encoded and split three ways, `validation_fraction` of the text
    for validation and as much for test; too few held-out characters is an error that says
    what to upload."""
    data = encode_documents(dataset_documents(dataset.path), validation_fraction)
    shortest = min(len(data.validation), len(data.test))
    if shortest < MIN_VALIDATION_CHARACTERS:
        raise DatasetTooSmallError(
            f"agent {dataset.agent_id}: dataset {dataset.version} ({dataset.path}) holds "
            f"{dataset.characters} characters; the held-out {validation_fraction:.0%} for "
            f"validation and as much for test are {len(data.validation)} and "
            f"{len(data.test)} characters, too few ({MIN_VALIDATION_CHARACTERS} each) to "
            "validate and test a model. Upload more documents."
        )
    return data
