"""The ONNX sentence encoder against sentence-transformers' own vectors for the same texts."""

import json
from pathlib import Path

import numpy as np
import pytest

from thunder_dagster.files import sha256_of
from thunder_dagster.retrieval.encoder import EncoderFiles, EncoderUnavailableError

REFERENCE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_vectors_match_sentence_transformers_at_every_batch_size(encoder, reference, batch_size):
    vectors = encoder.encode(reference["texts"], batch_size=batch_size)
    expected = np.asarray(reference["vectors"], np.float32)
    assert vectors.shape == expected.shape == (len(reference["texts"]), 384)
    cosine = (vectors * expected).sum(axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() >= 0.9999, dict(zip(reference["texts"], cosine.round(6), strict=True))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_order_is_kept_though_batches_are_sorted_by_length(encoder, reference):
    texts = reference["texts"]
    forward = encoder.encode(texts, batch_size=2)
    backward = encoder.encode(texts[::-1], batch_size=2)
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-6)
    assert encoder.encode([]).shape == (0, encoder.dimensions)


def test_the_version_names_the_weights_hash_and_changes_with_them(tmp_path):
    files = EncoderFiles.packaged()
    weights = sha256_of(files.folder / "model.safetensors")
    assert files.version().startswith(f"all-MiniLM-L6-v2-w{weights[:12]}-")
    copy = tmp_path / "model"
    for path in files.folder.rglob("*"):
        if path.is_file():
            target = copy / path.relative_to(files.folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    changed = EncoderFiles(files.name, copy)
    with open(copy / "model.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x00\x80\x3f")
    assert changed.version() != files.version()


def test_a_missing_encoder_package_says_how_to_install_it():
    with pytest.raises(EncoderUnavailableError, match="make install"):
        EncoderFiles.packaged("no_such_encoder_package")
