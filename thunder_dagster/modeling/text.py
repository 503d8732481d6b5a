"""Characters as tokens: the vocabulary, the train/validation split and the training windows."""

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
    """A vocabulary with the training and validation text as token ids."""

    vocabulary: Vocabulary
    train: np.ndarray
    validation: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)


def split_documents(texts: Sequence[str], validation_fraction: float = 0.1) -> tuple[str, str]:
    """The last `validation_fraction` of every document is held out, the rest is for training.

    One document split this way is exactly nanoGPT's split of tinyshakespeare.
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    train, validation = [], []
    for text in texts:
        cut = int(len(text) * (1 - validation_fraction))
        train.append(text[:cut])
        validation.append(text[cut:])
    return DOCUMENT_SEPARATOR.join(train), DOCUMENT_SEPARATOR.join(validation)


def encode_documents(texts: Sequence[str], validation_fraction: float = 0.1) -> EncodedText:
    train, validation = split_documents(texts, validation_fraction)
    vocabulary = Vocabulary.from_text(train)
    return EncodedText(vocabulary, vocabulary.encode(train), vocabulary.encode(validation))


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


def unigram_loss(train: np.ndarray, validation: np.ndarray, vocab_size: int) -> float:
    """Nats per character of the validation text under the training text's character frequencies.

    Add-one smoothing keeps it finite. A model that does no better has learned nothing.
    """
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    log_probabilities = np.log(counts / counts.sum())
    return float(-log_probabilities[validation].mean())


MIN_VALIDATION_CHARACTERS = 200


class DatasetTooSmallError(ValueError):
    """A dataset whose held-out share is too short to validate a model on."""


def encoded_dataset(dataset: TrainingDataset, validation_fraction: float) -> EncodedText:
    """The dataset's documents encoded and split; too few held-out characters is an error that
    says what to upload."""
    data = encode_documents(dataset_documents(dataset.path), validation_fraction)
    if len(data.validation) < MIN_VALIDATION_CHARACTERS:
        raise DatasetTooSmallError(
            f"agent {dataset.agent_id}: dataset {dataset.version} ({dataset.path}) holds "
            f"{dataset.characters} characters; the held-out {validation_fraction:.0%} is "
            f"{len(data.validation)} characters, too few to validate a model. Upload more "
            "documents."
        )
    return data
