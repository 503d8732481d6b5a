import os

from tests.factories import write
from thunder_dagster.documents.uploads import OUTSIDE_LINK, scan_agent
from thunder_dagster.documents.watch import UploadMemo, look_at_agent

T0 = 1_700_000_000_000_000_000


def by_path(uploads):
    return {upload.rel_path: upload for upload in uploads}


def test_scan_lists_categories_and_ignores_temporary_and_hidden_files(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "manual.txt", "text")
    write(agent / "reference" / "nested" / "deep.pdf", b"%PDF")
    for name in ("~$draft.docx", "download.part", ".~lock.notes.docx#", ".DS_Store"):
        write(agent / "communication" / name, "x")
    write(agent / "elsewhere" / "not-a-category.txt", "x")
    uploads = by_path(scan_agent(agent))
    assert uploads["reference/manual.txt"].ignored is None
    assert uploads["reference/nested/deep.pdf"].category == "reference"
    assert uploads["communication/~$draft.docx"].ignored.startswith("temporary file")
    assert uploads["communication/download.part"].ignored.startswith("temporary file")
    assert uploads["communication/.~lock.notes.docx#"].ignored == "hidden file"
    assert uploads["communication/.DS_Store"].ignored == "hidden file"
    assert not any(path.startswith("elsewhere") for path in uploads)


def test_symlinks_never_lead_out_of_the_agent_folder(home, tmp_path):
    agent = home.create_agent("acme")
    secret = write(tmp_path / "outside" / "secret.txt", "do not read")
    inside = write(agent / "reference" / "real.txt", "inside")
    os.symlink(secret, agent / "reference" / "escape.txt")
    os.symlink(tmp_path / "outside", agent / "reference" / "escape_dir")
    os.symlink(inside, agent / "work_product" / "alias.txt")
    uploads = by_path(scan_agent(agent))
    assert uploads["reference/escape.txt"].ignored == OUTSIDE_LINK
    assert uploads["reference/escape_dir"].ignored == OUTSIDE_LINK
    assert uploads["work_product/alias.txt"].ignored is None
    assert uploads["work_product/alias.txt"].path == inside.resolve()


def test_special_files_are_never_opened(home):
    agent = home.create_agent("acme")
    os.mkfifo(agent / "reference" / "pipe.txt")
    assert by_path(scan_agent(agent))["reference/pipe.txt"].ignored == "not a regular file"


def test_a_file_counts_once_it_is_unchanged_across_two_looks(home):
    agent = home.create_agent("acme")
    memo = UploadMemo()
    write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    first = look_at_agent(home, "acme", memo, now=100)
    assert first.pending == ("reference/a.txt",) and first.files == 0
    second = look_at_agent(home, "acme", memo, now=105)
    assert second.settled and second.files == 1
    third = look_at_agent(home, "acme", memo, now=110)
    assert third.digest == second.digest


def test_a_growing_file_keeps_the_agent_waiting(home):
    agent = home.create_agent("acme")
    memo = UploadMemo()
    path = write(agent / "reference" / "big.txt", "x" * 10, mtime_ns=T0)
    look_at_agent(home, "acme", memo, now=100)
    for step in range(1, 4):
        write(path, "x" * (10 + step), mtime_ns=T0 + step)
        assert not look_at_agent(home, "acme", memo, now=100 + 5 * step).settled
    assert look_at_agent(home, "acme", memo, now=130).settled


def test_a_file_that_never_settles_is_left_out_after_a_while(home):
    agent = home.create_agent("acme")
    memo = UploadMemo()
    path = write(agent / "reference" / "log.txt", "1", mtime_ns=T0)
    look_at_agent(home, "acme", memo, now=0)
    write(path, "12", mtime_ns=T0 + 1)
    late = look_at_agent(home, "acme", memo, now=400)
    assert late.settled and late.files == 0
    assert "still changing" in late.errors[0]


def test_changed_and_removed_files_change_the_digest(home):
    agent = home.create_agent("acme")
    memo = UploadMemo()
    path = write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    write(agent / "reference" / "b.txt", "beta", mtime_ns=T0)
    look_at_agent(home, "acme", memo, now=0)
    original = look_at_agent(home, "acme", memo, now=5).digest
    write(path, "alpha, edited", mtime_ns=T0 + 10)
    look_at_agent(home, "acme", memo, now=10)
    edited = look_at_agent(home, "acme", memo, now=15)
    assert edited.settled and edited.digest != original
    path.unlink()
    removed = look_at_agent(home, "acme", memo, now=20)
    assert removed.settled and removed.files == 1
    assert removed.digest not in (original, edited.digest)


def test_the_memo_survives_a_restart(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    memo = UploadMemo()
    look_at_agent(home, "acme", memo, now=0)
    memo.save(home)
    assert look_at_agent(home, "acme", UploadMemo.load(home), now=5).settled


def test_a_symlink_to_a_fifo_inside_the_agent_is_refused_and_never_opened(home):
    agent = home.create_agent("acme")
    os.mkfifo(agent / "reference" / ".pipe")
    os.symlink(agent / "reference" / ".pipe", agent / "reference" / "looks-like.txt")
    write(agent / "reference" / "real.txt", "inside", mtime_ns=T0)
    uploads = by_path(scan_agent(agent))
    assert uploads["reference/looks-like.txt"].ignored == "not a regular file"
    memo = UploadMemo()
    look_at_agent(home, "acme", memo, now=100)
    settled = look_at_agent(home, "acme", memo, now=105)  # would block forever on the FIFO
    assert settled.files == 1 and settled.errors == ()


def test_a_file_over_the_upload_limit_is_refused_by_name_without_being_hashed(home, monkeypatch):
    monkeypatch.setenv("THUNDER_MAX_UPLOAD_BYTES", "1000")
    agent = home.create_agent("acme")
    write(agent / "reference" / "huge.txt", "x" * 1001, mtime_ns=T0)
    write(agent / "reference" / "fine.txt", "x" * 1000, mtime_ns=T0)
    uploads = by_path(scan_agent(agent))
    assert "over the upload limit" in uploads["reference/huge.txt"].ignored
    assert "THUNDER_MAX_UPLOAD_BYTES" in uploads["reference/huge.txt"].ignored
    assert uploads["reference/fine.txt"].ignored is None


def test_a_file_name_that_is_not_utf8_is_refused_by_a_readable_name_and_the_rest_settle(home):
    agent = home.create_agent("acme")
    raw = os.path.join(os.fsencode(agent / "reference"), b"caf\xe9.txt")
    with open(raw, "w") as handle:
        handle.write("hello")
    write(agent / "reference" / "good.txt", "good", mtime_ns=T0)
    uploads = by_path(scan_agent(agent))
    refused = uploads["reference/caf\\xe9.txt"]
    assert "not UTF-8" in refused.ignored and "rename" in refused.ignored
    memo = UploadMemo()
    look_at_agent(home, "acme", memo, now=100)
    settled = look_at_agent(home, "acme", memo, now=105)
    assert settled.files == 1 and settled.errors == ()
    memo.save(home)
