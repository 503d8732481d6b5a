import pytest

from thunder_dagster.retrieval.encoder import EncoderFiles, SentenceEncoder


@pytest.fixture(scope="session")
def encoder(encoder_cache) -> SentenceEncoder:
    """The default encoder, its graph written once for the whole session."""
    return SentenceEncoder(EncoderFiles.packaged(), encoder_cache)
