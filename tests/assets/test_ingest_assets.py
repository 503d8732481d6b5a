import json
import shutil

import dagster as dg

from tests.documents.test_extraction import no_text_reason
from tests.factories import write
from thunder_dagster.assets.datasets import training_dataset
from thunder_dagster.assets.documents import chunks, documents
from thunder_dagster.documents.datasets import read_training_dataset
from thunder_dagster.resources.home import ThunderHome

INGEST = [documents, chunks, training_dataset]


def materialize(home, agent_id="acme", run_config=None):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [agent_id])
        return dg.materialize(
            INGEST,
            partition_key=agent_id,
            instance=instance,
            resources={"thunder": ThunderHome(root=str(home.root))},
            run_config=run_config,
            raise_on_error=False,
        )


def stock_agent(home, corpus):
    agent = home.create_agent("acme")
    shutil.copy(
        corpus / "pdf" / "004-pdflatex-4-pages_pdflatex-4-pages.pdf", agent / "work_product"
    )
    shutil.copy(
        corpus / "pdf" / "005-libreoffice-writer-password_libreoffice-writer-password.pdf",
        agent / "work_product",
    )
    shutil.copy(corpus / "pdf" / "019-grayscale-image_grayscale-image.pdf", agent / "reference")
    shutil.copy(corpus / "docx" / "tbl-having-applied-style.docx", agent / "communication")
    write(agent / "communication" / "notes.txt", 'Meeting notes, with commas, "quotes".\n' * 40)
    write(
        agent / "communication" / "copy_of_notes.txt",
        'Meeting notes, with commas, "quotes".\n' * 40,
    )
    write(agent / "reference" / "fake.docx", "not a zip")
    write(agent / "reference" / "sheet.xlsx", b"PK\x03\x04")
    write(agent / "reference" / "~$lock.docx", "lock")
    return agent


def test_the_ingest_assets_turn_uploads_into_a_checked_csv(home, corpus):
    stock_agent(home, corpus)
    result = materialize(home)
    assert result.success
    report = json.loads(home.ingest_report_path("acme").read_text())
    statuses = {entry["path"]: (entry["status"], entry["reason"]) for entry in report["files"]}
    assert statuses["work_product/004-pdflatex-4-pages_pdflatex-4-pages.pdf"][0] == "ok"
    assert statuses[
        "work_product/005-libreoffice-writer-password_libreoffice-writer-password.pdf"
    ] == ("rejected", "encrypted: upload a copy without a password")
    assert statuses["reference/019-grayscale-image_grayscale-image.pdf"] == (
        "empty",
        no_text_reason(),
    )
    assert statuses["reference/fake.docx"][0] == "rejected"
    assert statuses["reference/sheet.xlsx"] == (
        "skipped",
        "unsupported type .xlsx: upload txt, pdf, docx, md or html, or labelled examples as csv or "
        "jsonl",
    )
    assert statuses["reference/~$lock.docx"][0] == "skipped"
    assert statuses["communication/notes.txt"] == (
        "skipped",
        "duplicate of communication/copy_of_notes.txt",
    )
    assert report["summary"] == {"ok": 3, "labelled": 0, "empty": 1, "rejected": 2, "skipped": 3}

    dataset = result.output_for_node("training_dataset")
    frame = read_training_dataset(dataset.path)
    ok_entries = [entry for entry in report["files"] if entry["status"] == "ok"]
    assert len(frame) == sum(entry["chunks"] for entry in ok_entries) == dataset.rows
    assert set(frame["category"]) == {"work_product", "communication"}
    assert frame["text"].str.len().max() <= 512
    checks = result.get_asset_check_evaluations()
    assert {check.check_name for check in checks if check.passed} == {
        "not_empty",
        "chunks_within_size",
        "unique_chunk_ids",
    }
    metadata = result.asset_materializations_for_node("training_dataset")[0].metadata
    assert metadata["rows"].value == dataset.rows
    assert metadata["csv_path"].value == dataset.path


def test_an_unchanged_file_is_never_extracted_twice(home, corpus):
    stock_agent(home, corpus)
    assert materialize(home).success
    second = materialize(home)
    metadata = second.asset_materializations_for_node("documents")[0].metadata
    extracted = metadata["ok"].value + metadata["empty"].value + metadata["rejected"].value
    assert metadata["extracted_from_cache"].value == extracted == 6


def test_a_run_with_no_text_fails_its_blocking_check(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "blank.txt", "   \n")
    result = materialize(home)
    assert not result.success
    failed = [check for check in result.get_asset_check_evaluations() if not check.passed]
    assert [check.check_name for check in failed] == ["not_empty"]
    assert "no upload yielded text" in failed[0].description


def test_parse_limits_come_from_run_config(home, corpus):
    agent = home.create_agent("acme")
    shutil.copy(corpus / "pdf" / "004-pdflatex-4-pages_pdflatex-4-pages.pdf", agent / "reference")
    write(agent / "reference" / "ok.txt", "enough text to make a chunk")
    config = {"ops": {"documents": {"config": {"max_pages": 2, "max_file_mb": 1}}}}
    assert materialize(home, run_config=config).success
    report = json.loads(home.ingest_report_path("acme").read_text())
    reasons = {entry["path"]: entry["reason"] for entry in report["files"]}
    assert reasons["reference/004-pdflatex-4-pages_pdflatex-4-pages.pdf"] == (
        "too many pages: 4 (limit 2)"
    )
