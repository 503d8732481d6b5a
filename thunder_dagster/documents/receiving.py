"""An upload received over HTTP (`PUT .../documents/{category}/{filename}`) or by `thunder
upload`: streamed to a hidden temporary file in its category folder under the size limit, its
format checked by its content, then renamed into place, so the upload sensor never sees half a
file. The same bytes again change nothing (the answer says so); a refused upload leaves
nothing behind. The sensor then ingests it as any file dropped into the folder.
"""

import hashlib
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from thunder_dagster.documents.uploads import ignore_reason, sha256_file
from thunder_dagster.home import CATEGORIES, Home

TEXT_SUFFIXES = (".txt", ".csv", ".jsonl", ".md", ".markdown", ".html", ".htm")
ACCEPTED = (".pdf", ".docx", *TEXT_SUFFIXES)
MAX_NAME = 200


class UploadRefused(ValueError):
    """An upload that is not kept: `status` is 413 (too large) or 422 (name or content)."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field = field
        self.status = status


class NoSuchAgent(LookupError):
    """An upload for an agent that does not exist: create it first."""


@dataclass(frozen=True)
class Received:
    agent_id: str
    category: str
    filename: str
    sha256: str
    bytes: int
    unchanged: bool  # the same bytes were there already: nothing was written


def agent_exists(home: Home, agent_id: str) -> bool:
    """Whether the agent has its folder; an id no agent could have has none."""
    from thunder_dagster.home import InvalidAgentIdError

    try:
        return home.agent_dir(agent_id).is_dir()
    except InvalidAgentIdError:
        return False


def checked_name(category: str, filename: str) -> str:
    """The file name, refused unless it is one plain name of an accepted type."""
    if category not in CATEGORIES:
        raise UploadRefused(
            "category", f"category {category!r}: use one of {', '.join(CATEGORIES)}"
        )
    suffix = Path(filename).suffix.lower()
    problem = None
    if not filename or len(filename) > MAX_NAME or filename in (".", ".."):
        problem = f"a name of 1 to {MAX_NAME} characters"
    elif "/" in filename or "\\" in filename or "\x00" in filename:
        problem = "one file name, without a folder"
    elif not filename.isprintable():
        problem = "printable characters only"
    elif ignore_reason(filename):
        problem = f"a name the sensor would not ignore ({ignore_reason(filename)})"
    elif suffix not in ACCEPTED:
        problem = f"one of the types {', '.join(ACCEPTED)}"
    if problem:
        raise UploadRefused("filename", f"file name {filename[:80]!r}: give {problem}")
    return filename


def content_problem(path: Path, suffix: str) -> str | None:
    """Why the file's bytes are not what its name says, or None."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        return "the file is empty"
    if suffix == ".pdf" and not head.startswith(b"%PDF-"):
        return "a .pdf must start with %PDF-: this is not a PDF file"
    if suffix == ".docx":
        try:
            with zipfile.ZipFile(path) as archive:
                if "word/document.xml" not in archive.namelist():
                    return "a .docx must hold word/document.xml: this zip is not a Word document"
        except zipfile.BadZipFile:
            return "a .docx is a zip archive: this is not one"
    if suffix in TEXT_SUFFIXES:
        with open(path, "rb") as handle:
            data = handle.read()
        if b"\x00" in data:
            return f"a {suffix} is text: this file holds NUL bytes (a binary file?)"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"a {suffix} must be UTF-8 text: byte {error.start} is not"
    return None


class Receiving:
    """One upload in progress: `write` each chunk, then `finish` (or `abort`)."""

    def __init__(self, home: Home, agent_id: str, category: str, filename: str, limit: int):
        if not agent_exists(home, agent_id):
            raise NoSuchAgent(f"agent {agent_id!r} does not exist: create it first")
        self.agent_id, self.category = agent_id, category
        self.filename = checked_name(category, filename)
        self.limit = limit
        self.folder = home.category_dir(agent_id, category)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Hidden and .part: the upload sensor ignores it until it is renamed.
        self.temporary = self.folder / f".upload-{uuid.uuid4().hex}.part"
        self._file = open(self.temporary, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            self.abort()
            raise UploadRefused(
                "body",
                f"the file is over {self.limit} bytes (THUNDER_MAX_UPLOAD_BYTES): split it",
                413,
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> Received:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            problem = content_problem(self.temporary, Path(self.filename).suffix.lower())
            if problem:
                raise UploadRefused("body", f"{self.filename}: {problem}")
            digest = self._hash.hexdigest()
            target = self.folder / self.filename
            unchanged = target.is_file() and sha256_file(target) == digest
            if not unchanged:
                os.replace(self.temporary, target)
            return Received(
                self.agent_id, self.category, self.filename, digest, self.size, unchanged
            )
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.temporary.unlink(missing_ok=True)


def receive(home: Home, agent_id: str, category: str, filename: str, data, limit: int):
    """The whole upload at once, from an iterable of chunks: what `thunder upload` does."""
    receiving = Receiving(home, agent_id, category, filename, limit)
    try:
        for chunk in data:
            receiving.write(chunk)
    except BaseException:
        receiving.abort()
        raise
    return receiving.finish()


def remove(home: Home, agent_id: str, category: str, filename: str) -> bool:
    """Delete an uploaded file (the sensor sees it gone); whether there was one."""
    if not agent_exists(home, agent_id):
        raise NoSuchAgent(f"agent {agent_id!r} does not exist")
    target = home.category_dir(agent_id, category) / checked_name(category, filename)
    if not target.is_file():
        return False
    target.unlink()
    return True
