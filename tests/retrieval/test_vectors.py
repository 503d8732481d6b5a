"""What embed_chunks embeds, keeps and passes by, with a counting encoder in place of the model
(the model's own vectors are test_encoder.py's)."""

import numpy as np

from thunder_dagster.retrieval.vectors import ChunkRecord, VectorStore, embed_chunks, gather_vectors


def chunk(document: str, number: int, text: str) -> ChunkRecord:
    return ChunkRecord(
        f"{document}-{number:05d}", document, "reference", f"{document}.txt", 0, 1, text
    )


class Counting:
    def __init__(self, failing: str | None = None):
        self.seen: list[str] = []
        self.failing = failing

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.failing and any(self.failing in text for text in texts):
            raise RuntimeError("the encoder choked")
        self.seen += texts
        return np.asarray([[len(text), 1.0] for text in texts], np.float32)


def test_a_failing_document_is_reported_and_left_out_while_the_others_are_embedded(tmp_path):
    store = VectorStore(tmp_path)
    chunks = [chunk("a", 0, "alpha"), chunk("b", 0, "poison"), chunk("c", 0, "gamma")]
    encode = Counting(failing="poison")
    report = embed_chunks(chunks, encode, store)
    assert encode.seen == ["alpha", "gamma"]
    assert (report.embedded, report.documents_embedded) == (2, 2)
    assert report.failed == ["b.txt: RuntimeError: the encoder choked"]
    kept, vectors = gather_vectors(chunks, store)
    assert [c.chunk_id for c in kept] == ["a-00000", "c-00000"]
    np.testing.assert_array_equal(vectors, [[5, 1], [5, 1]])


def test_a_changed_chunk_is_embedded_again_and_the_rest_of_its_document_kept(tmp_path):
    store = VectorStore(tmp_path)
    embed_chunks([chunk("a", 0, "one"), chunk("a", 1, "two")], Counting(), store)
    encode = Counting()
    report = embed_chunks([chunk("a", 0, "one"), chunk("a", 1, "three")], encode, store)
    assert encode.seen == ["three"] and (report.embedded, report.skipped) == (1, 1)
    _, vectors = gather_vectors([chunk("a", 1, "three")], store)
    np.testing.assert_array_equal(vectors, [[5, 1]])
