import itertools

import pytest

from thunder_dagster.documents.chunking import chunk_count, chunk_id, chunk_spans

LENGTHS = [0, 1, 50, 461, 462, 511, 512, 513, 923, 974, 975, 1000, 5000, 100_003]


@pytest.mark.parametrize("length", LENGTHS)
def test_chunks_cover_the_text_with_fixed_size_and_overlap(length):
    spans = list(chunk_spans(length))
    assert len(spans) == chunk_count(length)
    if length == 0:
        assert spans == []
        return
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(end - start <= 512 for start, end in spans)
    assert all(end - start == 512 for start, end in spans[:-1])
    for (start, end), (next_start, _) in itertools.pairwise(spans):
        assert end - next_start == 50
        assert next_start > start


def test_text_within_one_chunk_gives_exactly_one():
    assert list(chunk_spans(512)) == [(0, 512)]
    assert list(chunk_spans(513)) == [(0, 512), (462, 513)]


def test_the_spans_slice_the_text():
    text = "".join(chr(65 + i % 26) for i in range(2000))
    pieces = [text[start:end] for start, end in chunk_spans(len(text))]
    assert pieces[1][:50] == pieces[0][-50:]
    assert "".join(piece if i == 0 else piece[50:] for i, piece in enumerate(pieces)) == text


def test_other_sizes_and_invalid_parameters():
    assert list(chunk_spans(10, size=4, overlap=1)) == [(0, 4), (3, 7), (6, 10)]
    with pytest.raises(ValueError):
        list(chunk_spans(10, size=4, overlap=4))


def test_chunk_ids_are_stable_and_ordered():
    assert chunk_id("0123456789abcdef", 7) == "0123456789abcdef-00007"
    # Zero-padded: the ids sort as the chunks come, also past ten and a hundred.
    ids = [chunk_id("0123456789abcdef", index) for index in (0, 1, 9, 10, 99, 100, 12345)]
    assert sorted(ids) == ids
