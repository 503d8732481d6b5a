"""Labelled examples from an upload: a CSV file with a header naming `text` and `label`
columns, or a JSONL file of objects with `text` and `label`, for the classification and
sentiment tasks. Other columns and keys are ignored; column names are matched without regard
to case or surrounding spaces.

A row without a text or a label, or a JSONL line that is not an object, is reported with its
line number and left out; the rest are used. A file with neither column, or not UTF-8, is
refused whole, with what was found and what to change.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

LABELLED_SUFFIXES = (".csv", ".jsonl")
MAX_TEXT_CHARACTERS = 20_000
MAX_LABEL_CHARACTERS = 100


class LabelledFileError(ValueError):
    """A labelled upload that cannot be read at all: the message names the file and says why."""


@dataclass(frozen=True)
class LabelledExample:
    text: str
    label: str
    line: int  # where it starts in its file, from 1 (the CSV header is line 1)


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str


@dataclass(frozen=True)
class LabelledFile:
    path: str
    examples: list[LabelledExample] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    def labels(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for example in self.examples:
            counts[example.label] = counts.get(example.label, 0) + 1
        return dict(sorted(counts.items()))


def is_labelled(path: Path) -> bool:
    return path.suffix.lower() in LABELLED_SUFFIXES


def read_labelled(path: Path) -> LabelledFile:
    """The file's examples and its bad rows; LabelledFileError for a file unusable whole."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelledFileError(
            f"{path.name}: not UTF-8 (byte {error.start}); save it as UTF-8 and upload it again"
        ) from None
    if path.suffix.lower() == ".csv":
        return _csv(path, text)
    if path.suffix.lower() == ".jsonl":
        return _jsonl(path, text)
    raise LabelledFileError(f"{path.name}: labelled data is a .csv or .jsonl file")


def _checked(line: int, text, label, examples: list, problems: list) -> None:
    text = text.strip() if isinstance(text, str) else text
    label = (
        str(label).strip()
        if isinstance(label, str | int) and not isinstance(label, bool)
        else label
    )
    if not isinstance(text, str) or not text:
        problems.append(RowProblem(line, "no text: give the example's text"))
    elif not isinstance(label, str) or not label:
        problems.append(RowProblem(line, "no label: give the example's label"))
    elif len(text) > MAX_TEXT_CHARACTERS:
        problems.append(
            RowProblem(line, f"text of {len(text)} characters; at most {MAX_TEXT_CHARACTERS}")
        )
    elif len(label) > MAX_LABEL_CHARACTERS:
        problems.append(
            RowProblem(line, f"label of {len(label)} characters; at most {MAX_LABEL_CHARACTERS}")
        )
    else:
        examples.append(LabelledExample(text, label, line))


def _csv(path: Path, text: str) -> LabelledFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LabelledFileError(f"{path.name}: empty; give a header with text and label") from None
    except csv.Error as error:
        raise LabelledFileError(f"{path.name}: not CSV ({error})") from None
    names = [name.strip().lower() for name in header]
    if "text" not in names or "label" not in names:
        raise LabelledFileError(
            f"{path.name}: the header names {', '.join(repr(n) for n in header) or 'nothing'}; "
            "it needs a 'text' and a 'label' column"
        )
    text_at, label_at = names.index("text"), names.index("label")
    examples, problems = [], []
    line = reader.line_num + 1  # a row's first line: a quoted cell may span several
    try:
        for row in reader:
            next_line = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                line = next_line
                continue
            cells = row + [""] * (max(text_at, label_at) + 1 - len(row))
            _checked(line, cells[text_at], cells[label_at], examples, problems)
            line = next_line
    except csv.Error as error:
        problems.append(RowProblem(line, f"not CSV from here on ({error})"))
    return LabelledFile(str(path), examples, problems)


def _jsonl(path: Path, text: str) -> LabelledFile:
    examples, problems = [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as error:
            problems.append(RowProblem(line, f"not JSON ({error.msg})"))
            continue
        if not isinstance(record, dict):
            problems.append(RowProblem(line, "not a JSON object with text and label"))
            continue
        _checked(line, record.get("text"), record.get("label"), examples, problems)
    if not examples and not problems:
        raise LabelledFileError(f"{path.name}: empty; give one JSON object a line")
    return LabelledFile(str(path), examples, problems)
