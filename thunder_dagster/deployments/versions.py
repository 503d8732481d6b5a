"""Semantic versions of an agent's models: major for a new family, minor for a retrain or a
distillation, patch for a fine-tune."""

import re
from dataclasses import dataclass

CHANGES = ("retrain", "fine_tune", "distillation")
PATTERN = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> "Version":
        match = PATTERN.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a version MAJOR.MINOR.PATCH")
        return cls(*(int(part) for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def next_version(
    existing: list[Version], previous_family: str | None, family: str, change: str = "retrain"
) -> Version:
    """The version after the highest one deployed so far, by what changed since the champion."""
    if change not in CHANGES:
        raise ValueError(f"change must be one of {CHANGES}, got {change!r}")
    if not existing:
        return Version(1, 0, 0)
    top = max(existing)
    if previous_family is not None and previous_family != family:
        return Version(top.major + 1, 0, 0)
    if change == "fine_tune":
        return Version(top.major, top.minor, top.patch + 1)
    return Version(top.major, top.minor + 1, 0)
