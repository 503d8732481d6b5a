import math

import numpy as np
import pytest

from thunder_dagster.documents.chunking import chunk_spans
from thunder_dagster.documents.datasets import read_training_dataset, write_training_dataset
from thunder_dagster.modeling.text import (
    UNKNOWN,
    Vocabulary,
    dataset_documents,
    encode_documents,
    random_windows,
    sequential_windows,
    split_documents,
    unigram_loss,
)


def test_the_vocabulary_round_trips_and_maps_unseen_characters_to_unknown():
    vocabulary = Vocabulary.from_text("hello, world")
    assert vocabulary.tokens[0] == UNKNOWN
    assert vocabulary.decode(vocabulary.encode("hello")) == "hello"
    assert vocabulary.decode(vocabulary.encode("hex!")) == f"he{UNKNOWN}{UNKNOWN}"


def test_the_last_tenth_of_every_document_is_held_out():
    train, validation = split_documents(["a" * 90 + "b" * 10, "c" * 45 + "d" * 5])
    assert train == "a" * 90 + "\n\n" + "c" * 45
    assert validation == "b" * 10 + "\n\n" + "d" * 5
    with pytest.raises(ValueError, match="validation_fraction"):
        split_documents(["abc"], 1.0)


def test_documents_come_back_whole_from_their_overlapping_chunks(tmp_path):
    texts = {"doc-a": "".join(chr(65 + i % 26) for i in range(1500)), "doc-b": "short one"}
    rows = []
    for document_id, text in texts.items():
        for index, (start, end) in enumerate(chunk_spans(len(text), 512, 50)):
            rows.append(
                (
                    document_id,
                    "reference",
                    f"{document_id}.txt",
                    index,
                    f"{document_id}:{index}",
                    start,
                    end,
                    text[start:end],
                )
            )
    dataset = write_training_dataset("acme", rows, tmp_path)
    assert len(read_training_dataset(dataset.path)) > 3
    assert dataset_documents(dataset.path) == [texts["doc-a"], texts["doc-b"]]


def test_windows_are_inputs_and_the_same_text_shifted_by_one():
    ids = np.arange(1000, dtype=np.int32)
    x, y = random_windows(ids, 16, 32, np.random.default_rng(0))
    assert x.shape == y.shape == (32, 16)
    assert (y[:, :-1] == x[:, 1:]).all() and (y[:, -1] == x[:, -1] + 1).all()
    x, y = sequential_windows(ids, 100, limit=3)
    assert x.shape == (3, 100) and x[0, 0] == 0 and (y == x + 1).all()
    with pytest.raises(ValueError, match="fewer than the context length"):
        random_windows(ids[:10], 16, 1, np.random.default_rng(0))


def test_the_unigram_baseline_is_the_entropy_of_the_character_frequencies():
    data = encode_documents(["ab" * 5000])
    loss = unigram_loss(data.train, data.validation, data.vocab_size)
    assert loss == pytest.approx(math.log(2), abs=1e-3)
