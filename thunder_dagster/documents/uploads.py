"""Listing an agent's uploads: which files count, which are ignored and why. Never parses."""

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from thunder_dagster import settings
from thunder_dagster.home import CATEGORIES

OUTSIDE_LINK = "symlink leads outside the agent folder"
TEMPORARY_SUFFIXES = (".part", ".partial", ".crdownload", ".tmp", ".swp", "~")


@dataclass(frozen=True)
class Upload:
    """One file under an agent's category folders, as a stat saw it."""

    rel_path: str
    category: str
    path: Path
    size: int
    mtime_ns: int
    ignored: str | None = None

    @property
    def filename(self) -> str:
        return Path(self.rel_path).name

    @property
    def stat_key(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def ignore_reason(name: str) -> str | None:
    """Why a file name is not an upload (hidden, an editor's lock file, a partial download)."""
    if name.startswith("~$"):
        return "temporary file (an Office lock file)"
    if name.startswith("."):
        return "hidden file"
    if name.lower().endswith(TEMPORARY_SUFFIXES):
        return "temporary file (still being written?)"
    return None


NOT_UTF8_NAME = "file name is not UTF-8: rename it (its bytes are shown escaped)"


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def max_upload_bytes() -> int:
    value = settings.MAX_UPLOAD_BYTES.value()
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{settings.MAX_UPLOAD_BYTES.name}={value!r}: give a whole number of bytes"
        ) from None


def _walk(
    agent_root: Path, folder: Path, category: str, limit: int | None = None
) -> Iterator[Upload]:
    limit = max_upload_bytes() if limit is None else limit
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        rel = folder.relative_to(agent_root).as_posix()
        yield Upload(rel, category, folder, 0, 0, ignored=f"cannot list folder: {error.strerror}")
        return
    for entry in entries:
        path = Path(entry.path)
        rel = path.relative_to(agent_root).as_posix()
        if not _utf8(rel):  # Python keeps the undecodable bytes as surrogates
            shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
            yield Upload(shown, category, path, 0, 0, NOT_UTF8_NAME)
            continue
        reason = ignore_reason(entry.name)
        try:
            if entry.is_symlink():
                target = Path(os.path.realpath(path))
                if not target.is_relative_to(agent_root):
                    yield Upload(rel, category, path, 0, 0, OUTSIDE_LINK)
                    continue
                if target.is_dir():
                    yield Upload(rel, category, path, 0, 0, "symlinked folder (not followed)")
                    continue
                path = target
            elif entry.is_dir(follow_symlinks=False):
                if reason is None:
                    yield from _walk(agent_root, path, category, limit)
                continue
            elif not entry.is_file(follow_symlinks=False):
                yield Upload(rel, category, path, 0, 0, "not a regular file")
                continue
            stat = path.stat()
        except OSError as error:
            yield Upload(rel, category, path, 0, 0, ignored=f"cannot stat: {error.strerror}")
            continue
        if not S_ISREG(stat.st_mode):  # a link inside the folder to a FIFO, socket or device
            yield Upload(rel, category, path, 0, 0, "not a regular file")
            continue
        if reason is None and stat.st_size > limit:
            reason = (
                f"over the upload limit: {stat.st_size:,} bytes, the limit is {limit:,} "
                f"({settings.MAX_UPLOAD_BYTES.name}); split the file or raise the limit"
            )
        yield Upload(rel, category, path, stat.st_size, stat.st_mtime_ns, reason)


def scan_agent(agent_dir: Path) -> list[Upload]:
    """Every file under the agent's category folders, in stable order; never follows a link out."""
    agent_root = Path(os.path.realpath(agent_dir))
    uploads: list[Upload] = []
    for category in CATEGORIES:
        folder = agent_root / category
        if folder.is_dir() and not folder.is_symlink():
            uploads.extend(_walk(agent_root, folder, category))
    return uploads


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def content_digest(hashes: dict[str, str]) -> str:
    """One digest for an agent's uploads: their paths and content hashes, in a stable order."""
    digest = hashlib.sha256()
    for rel_path in sorted(hashes):
        digest.update(f"{rel_path}\0{hashes[rel_path]}\n".encode())
    return digest.hexdigest()
