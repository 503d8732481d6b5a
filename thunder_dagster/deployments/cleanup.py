"""The hourly cleanup (seed 004's cache cleanup): old model versions, leftover temporary files.

A version is kept while it is the champion, the challenger, the teacher or the version a
rollback would return to, and while it is among the newest `keep` versions. Staging folders a
crashed release left, and build and trial folders older than `max_age_seconds`, are removed.
"""

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from thunder_dagster.deployments.pointers import ROLES, champion_stack, read_pointer
from thunder_dagster.deployments.versions import PATTERN, Version


@dataclass
class CleanupReport:
    removed_versions: list[str] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def add(self, path: Path) -> None:
        self.freed_bytes += size_of(path)
        shutil.rmtree(path, ignore_errors=True)
        self.removed_paths.append(str(path))


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def protected_versions(deployments_dir: Path) -> set[str]:
    kept = {
        pointer.version
        for role in ROLES
        if (pointer := read_pointer(deployments_dir, role)) is not None
    }
    stack = champion_stack(deployments_dir)
    kept.update(deployment.version for deployment in stack[-2:])
    return kept


def clean_agent(
    models_dir: Path, deployments_dir: Path, keep: int, max_age_seconds: float, report=None
) -> CleanupReport:
    report = report or CleanupReport()
    if not models_dir.is_dir():
        return report
    versions = sorted(
        (
            Version.parse(p.name)
            for p in models_dir.iterdir()
            if p.is_dir() and PATTERN.match(p.name)
        ),
        reverse=True,
    )
    protected = protected_versions(deployments_dir)
    for version in versions[keep:]:
        if str(version) not in protected:
            report.add(models_dir / str(version))
            report.removed_versions.append(f"{models_dir.name} {version}")
    cutoff = time.time() - max_age_seconds
    leftovers = [p for p in models_dir.glob(".*.staging") if p.is_dir()]
    for folder in ("builds", "trials"):
        if (models_dir / folder).is_dir():
            leftovers += [p for p in (models_dir / folder).iterdir() if p.is_dir()]
    for path in leftovers:
        if path.stat().st_mtime < cutoff:
            report.add(path)
    return report
