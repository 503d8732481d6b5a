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


def test_few_documents_split_into_three_blocks_test_last_with_gaps_between():
    text = "".join(chr(65 + i % 26) for i in range(20_000))
    split = split_documents([text[:12_000], text[12_000:]])
    joined = text[:12_000] + "\n\n" + text[12_000:]
    assert split.by == "blocks"
    # Test: the last tenth of the joined text; validation: the tenth before it, 200 (1%)
    # characters apart; the training text ends 200 characters before validation starts.
    size, gap = 2000, 200
    assert split.test == joined[-size:]
    assert split.validation == joined[-2 * size - gap : -size - gap]
    assert split.train == joined[: -2 * size - 2 * gap]
    assert len(split.train) + len(split.validation) + len(split.test) + 2 * gap == len(joined)
    assert split_documents(["x" * 1_000_000]).test == "x" * 100_000  # gaps stop at one chunk
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_documents(["abc"], 0.5)


def test_enough_documents_hold_whole_documents_out_for_validation_and_test():
    texts = [f"document {n}: " + chr(97 + n) * 990 for n in range(20)]
    split = split_documents(texts)
    assert split.by == "documents"
    held_out = split.validation.split("\n\n") + split.test.split("\n\n")
    train = split.train.split("\n\n")
    # Two documents of twenty each, none of them split, none in two places.
    assert len(split.validation.split("\n\n")) == len(split.test.split("\n\n")) == 2
    assert sorted(train + held_out) == sorted(texts) and not set(train) & set(held_out)
    # The same documents in another order make the same split.
    assert split_documents(texts[::-1]) == split


def test_a_document_too_large_to_hold_out_whole_makes_a_block_split():
    texts = [chr(97 + n) * 100 for n in range(11)] + ["z" * 50_000]
    assert split_documents(texts).by == "blocks"


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
    loss = unigram_loss(data.train, data.test, data.vocab_size)
    assert loss == pytest.approx(math.log(2), abs=1e-3)
