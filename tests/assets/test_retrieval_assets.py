"""chunk_embeddings and retrieval_index on real text: what is embedded, what is kept, and the
index the known-item check lets the server use."""

import json

import dagster as dg
import pytest

from thunder_dagster.assets.documents import chunks, documents
from thunder_dagster.assets.retrieval import chunk_embeddings, retrieval_index
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.retrieval.encoder import EncoderFiles
from thunder_dagster.retrieval.index import RetrievalIndex, pointed_version

ASSETS = [documents, chunks, chunk_embeddings, retrieval_index]
PART = 6_000


def materialize(home, encoder=None, run_config=None, agent_id="bard"):
    thunder = ThunderHome(root=str(home.root))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [agent_id])
        result = dg.materialize(
            ASSETS,
            partition_key=agent_id,
            instance=instance,
            resources={
                "thunder": thunder,
                "encoder": encoder or SentenceEncoderResource(thunder=thunder),
            },
            run_config=run_config,
            raise_on_error=False,
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


def metadata(result, asset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in materialization.metadata.items()}


def check(result):
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


@pytest.fixture
def bard(home, corpus):
    """An agent with three plays' worth of tinyshakespeare, one document each."""
    text = (corpus / "text" / "tinyshakespeare.txt").read_text()
    agent = home.create_agent("bard")
    for number in range(3):
        part = text[number * PART : (number + 1) * PART]
        (agent / "reference" / f"part_{number}.txt").write_text(part)
    return agent


def test_an_upload_embeds_only_its_own_chunks_and_the_index_passes_its_check(home, bard, corpus):
    first = materialize(home)
    embedded = metadata(first, "chunk_embeddings")
    total = embedded["chunks_embedded"]
    assert total > 30 and embedded["chunks_skipped"] == 0
    assert embedded["dimensions"] == 384 and embedded["encoder"] == "all-MiniLM-L6-v2"
    evaluation = check(first)
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["recall_at_5"].value >= 0.6
    served = pointed_version(home.retrieval_dir("bard"))
    assert served == metadata(first, "retrieval_index")["version"]
    assert RetrievalIndex(home.retrieval_dir("bard") / "indexes" / served).manifest.chunks == total

    text = (corpus / "text" / "tinyshakespeare.txt").read_text()
    (bard / "communication" / "letter.txt").write_text(text[50_000:52_000])
    second = materialize(home)
    again = metadata(second, "chunk_embeddings")
    assert again["chunks_skipped"] == total
    assert again["chunks_embedded"] == 5  # 2,000 characters in 512-character chunks, 50 shared
    assert again["documents_embedded"] == 1
    assert pointed_version(home.retrieval_dir("bard")) != served

    (bard / "communication" / "letter.txt").unlink()
    third = materialize(home)
    assert metadata(third, "chunk_embeddings")["documents_removed"] == 1
    assert metadata(third, "chunk_embeddings")["chunks_embedded"] == 0
    # The same chunks again: the index of the first run, served again, not rebuilt.
    assert metadata(third, "retrieval_index")["built"] is False
    assert pointed_version(home.retrieval_dir("bard")) == served


def test_reembed_all_and_a_new_encoder_version_embed_everything(home, bard, tmp_path):
    total = metadata(materialize(home), "chunk_embeddings")["chunks_embedded"]
    everything = {"ops": {"chunk_embeddings": {"config": {"reembed_all": True}}}}
    forced = metadata(materialize(home, run_config=everything), "chunk_embeddings")
    assert (forced["chunks_embedded"], forced["chunks_skipped"]) == (total, 0)

    # Another encoder: the same weights read 128 tokens at most, a version of its own.
    packaged = EncoderFiles.packaged().folder
    shorter = tmp_path / "minilm-128"
    for path in packaged.rglob("*"):
        if path.is_file():
            target = shorter / path.relative_to(packaged)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    (shorter / "sentence_bert_config.json").unlink()
    (shorter / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    thunder = ThunderHome(root=str(home.root))
    other = SentenceEncoderResource(thunder=thunder, model_dir=str(shorter))
    switched = materialize(home, encoder=other)
    moved = metadata(switched, "chunk_embeddings")
    assert (moved["chunks_embedded"], moved["chunks_skipped"]) == (total, 0)
    assert moved["encoder_version"].endswith("-s128-g1")
    assert metadata(switched, "retrieval_index")["encoder_version"] == moved["encoder_version"]


def test_an_unreadable_vector_file_is_set_aside_and_its_document_embedded_again(home, bard):
    first = metadata(materialize(home), "chunk_embeddings")
    vectors = home.retrieval_dir("bard") / "vectors" / first["encoder_version"]
    victim = sorted(vectors.glob("*.npz"))[0]
    victim.write_bytes(b"torn")
    (vectors / "README.txt").write_text("left here by hand")
    again = metadata(materialize(home), "chunk_embeddings")
    assert again["documents_embedded"] == 1 and again["documents_skipped"] == 2
    assert (vectors / "README.txt").exists()


def test_an_agent_without_chunks_serves_no_index_and_says_why(home, bard):
    materialize(home)
    for path in bard.rglob("*.txt"):
        path.unlink()
    result = materialize(home)
    evaluation = check(result)
    assert not evaluation.passed and "upload documents" in evaluation.description
    assert pointed_version(home.retrieval_dir("bard")) is None


def test_an_index_that_fails_its_check_is_not_served_and_the_last_good_one_stays(home, bard):
    materialize(home)
    served = pointed_version(home.retrieval_dir("bard"))
    # Three more documents of one sentence over and over: their chunks are alike, so a query
    # made from one of them cannot tell it from the others.
    for number in range(3):
        sentence = f"The same words are written here again and again in copy {number}. "
        (bard / "communication" / f"copy_{number}.txt").write_text(sentence * 120)
    strict = {"ops": {"retrieval_index": {"config": {"min_recall": 0.95, "known_items": 60}}}}
    result = materialize(home, run_config=strict)
    evaluation = check(result)
    assert not evaluation.passed
    assert evaluation.metadata["recall_at_5"].value < 0.95
    assert metadata(result, "retrieval_index")["served"] is False
    assert pointed_version(home.retrieval_dir("bard")) == served
