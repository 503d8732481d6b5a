"""Cutting text into fixed-size, overlapping character chunks."""

from collections.abc import Iterator

CHUNK_SIZE = 512
CHUNK_OVERLAP = 50


def chunk_spans(
    length: int, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP
) -> Iterator[tuple[int, int]]:
    """(start, end) of each chunk of a text of `length` characters.

    Every chunk is `size` long but the last, which may be shorter; consecutive chunks share
    `overlap` characters; the last chunk ends at the end of the text; empty text has no chunk.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"chunk size {size} and overlap {overlap}: need 0 <= overlap < size")
    step = size - overlap
    start = 0
    while start < length:
        end = min(start + size, length)
        yield start, end
        if end == length:
            return
        start += step


def chunk_count(length: int, size: int = CHUNK_SIZE, overlap: int = CHUNK_OVERLAP) -> int:
    if length <= 0:
        return 0
    if length <= size:
        return 1
    step = size - overlap
    return 1 + -(-(length - size) // step)


def chunk_id(document_id: str, index: int) -> str:
    """A chunk's id: stable for the same document content and position."""
    return f"{document_id}-{index:05d}"
