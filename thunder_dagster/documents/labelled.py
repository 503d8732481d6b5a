"""Labelled uploads: a CSV file with a header, or a JSONL file of objects, holding either

- labelled examples, `text` and `label` (the classification and sentiment tasks), or
- prompt and response pairs, `prompt` and `response` (the instruction and chat tasks).

A .txt file in seed 001's own forms is read the same way: lines `"text" -> label` (numbered
or not, under an optional title line ending in a colon) are labelled examples, and blocks of
`Task:`, `Input:` (optional, any number of lines) and `Expected:` are prompt and response
pairs, the prompt being the task and its input.

Other columns and keys are ignored; column names are matched without regard to case or
surrounding spaces. A CSV's header says which it holds; a JSONL file holds what its first
object names.

A row without one of its two values, or a JSONL line that is not an object, is reported with
its line number and left out; the rest are used. A file with neither pair of columns, or not
UTF-8, is refused whole, with what was found and what to change.
"""

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

LABELLED_SUFFIXES = (".csv", ".jsonl")
MAX_TEXT_CHARACTERS = 20_000
MAX_LABEL_CHARACTERS = 100
# kind -> its two columns, and the longest each may be
SCHEMAS = {
    "labelled": (("text", MAX_TEXT_CHARACTERS), ("label", MAX_LABEL_CHARACTERS)),
    "pairs": (("prompt", MAX_TEXT_CHARACTERS), ("response", MAX_TEXT_CHARACTERS)),
}
WHAT = {"labelled": "example", "pairs": "pair"}


class LabelledFileError(ValueError):
    """A labelled upload that cannot be read at all: the message names the file and says why."""


@dataclass(frozen=True)
class LabelledExample:
    text: str
    label: str
    line: int  # where it starts in its file, from 1 (the CSV header is line 1)


@dataclass(frozen=True)
class PromptPair:
    prompt: str
    response: str
    line: int


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str


@dataclass(frozen=True)
class LabelledFile:
    path: str
    examples: list = field(default_factory=list)  # LabelledExample, or PromptPair for pairs
    problems: list[RowProblem] = field(default_factory=list)
    kind: str = "labelled"

    def labels(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for example in self.examples:
            counts[example.label] = counts.get(example.label, 0) + 1
        return dict(sorted(counts.items()))


ARROW = re.compile(r'^\s*(?:\d+[.)]\s*)?"(?P<text>.*)"\s*->\s*(?P<label>\S.*?)\s*$')
TITLE = re.compile(r"^[^\"]{1,120}:\s*$")
FIELD = re.compile(r"^(Task|Input|Expected):\s?(.*)$")
SNIFFED = 65536  # bytes of a .txt looked at to tell seed 001's forms from prose


def seed_form(text: str) -> str | None:
    """ "labelled" or "pairs" when the text is in one of seed 001's forms, else None."""
    lines = [line for line in text.splitlines() if line.strip()]
    arrows = sum(bool(ARROW.match(line)) for line in lines)
    if arrows >= 2 and arrows >= 0.8 * sum(not TITLE.match(line) for line in lines):
        return "labelled"
    starts = {line.strip().split(":", 1)[0] for line in lines if FIELD.match(line.strip())}
    titled = lines and TITLE.match(lines[0]) and not FIELD.match(lines[0].strip())
    body = lines[1:] if titled else lines
    if body and body[0].strip().startswith("Task:") and "Expected" in starts:
        return "pairs"
    return None


def is_labelled(path: Path) -> bool:
    """A .csv or .jsonl, or a .txt in one of seed 001's forms."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in LABELLED_SUFFIXES:
        return True
    if suffix != ".txt":
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFFED).decode("utf-8-sig", errors="ignore")
    except OSError:
        return False
    return seed_form(head) is not None


def read_labelled(path: Path) -> LabelledFile:
    """The file's examples or pairs and its bad rows; LabelledFileError for a file unusable
    whole."""
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
    kind = seed_form(text) if path.suffix.lower() == ".txt" else None
    if kind == "labelled":
        return _arrows(path, text)
    if kind == "pairs":
        return _blocks(path, text)
    raise LabelledFileError(
        f"{path.name}: labelled data is a .csv or .jsonl file, or a .txt of seed 001's "
        '"text" -> label lines or Task:/Input:/Expected: blocks'
    )


def _arrows(path: Path, text: str) -> LabelledFile:
    examples, problems = [], []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or TITLE.match(raw):
            continue
        match = ARROW.match(raw)
        if match is None:
            problems.append(RowProblem(line, 'not a "text" -> label line'))
            continue
        _checked("labelled", line, (match["text"], match["label"]), examples, problems)
    return LabelledFile(str(path), examples, problems, "labelled")


def _blocks(path: Path, text: str) -> LabelledFile:
    """Task:/Input:/Expected: blocks; a field runs on to the next field's line."""
    examples, problems = [], []
    block: dict[str, list[str]] = {}
    start, field = 0, None

    def close() -> None:
        if not block:
            return
        task, given = "\n".join(block.get("Task", [])), "\n".join(block.get("Input", []))
        prompt = f"{task.strip()}\n\n{given.strip()}".strip()
        _checked("pairs", start, (prompt, "\n".join(block.get("Expected", []))), examples, problems)
        block.clear()

    for line, raw in enumerate(text.splitlines(), start=1):
        match = FIELD.match(raw.strip())
        if match:
            field = match[1]
            if field == "Task":
                close()
                start = line
            block.setdefault(field, []).append(match[2])
        elif field is not None and block:
            block[field].append(raw)
    close()
    return LabelledFile(str(path), examples, problems, "pairs")


def _checked(kind: str, line: int, values: tuple, examples: list, problems: list) -> None:
    (first, first_limit), (second, second_limit) = SCHEMAS[kind]
    one, two = values
    one = one.strip() if isinstance(one, str) else one
    if isinstance(two, int) and not isinstance(two, bool) and kind == "labelled":
        two = str(two)  # a numeric label (a rating, a class number) is its digits
    two = two.strip() if isinstance(two, str) else two
    what = WHAT[kind]
    if not isinstance(one, str) or not one:
        problems.append(RowProblem(line, f"no {first}: give the {what}'s {first}"))
    elif not isinstance(two, str) or not two:
        problems.append(RowProblem(line, f"no {second}: give the {what}'s {second}"))
    elif len(one) > first_limit:
        problems.append(
            RowProblem(line, f"{first} of {len(one)} characters; at most {first_limit}")
        )
    elif len(two) > second_limit:
        problems.append(
            RowProblem(line, f"{second} of {len(two)} characters; at most {second_limit}")
        )
    elif kind == "labelled":
        examples.append(LabelledExample(one, two, line))
    else:
        examples.append(PromptPair(one, two, line))


def _kind_of(names) -> str | None:
    for kind, ((first, _), (second, _)) in SCHEMAS.items():
        if first in names and second in names:
            return kind
    return None


def _csv(path: Path, text: str) -> LabelledFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise LabelledFileError(
            f"{path.name}: empty; give a header with text and label (or prompt and response)"
        ) from None
    except csv.Error as error:
        raise LabelledFileError(f"{path.name}: not CSV ({error})") from None
    names = [name.strip().lower() for name in header]
    kind = _kind_of(names)
    if kind is None:
        raise LabelledFileError(
            f"{path.name}: the header names {', '.join(repr(n) for n in header) or 'nothing'}; "
            "it needs a 'text' and a 'label' column (labelled examples), or a 'prompt' and a "
            "'response' column (prompt and response pairs)"
        )
    at = [names.index(column) for column, _ in SCHEMAS[kind]]
    examples, problems = [], []
    line = reader.line_num + 1  # a row's first line: a quoted cell may span several
    try:
        for row in reader:
            next_line = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                line = next_line
                continue
            cells = row + [""] * (max(at) + 1 - len(row))
            _checked(kind, line, (cells[at[0]], cells[at[1]]), examples, problems)
            line = next_line
    except csv.Error as error:
        problems.append(RowProblem(line, f"not CSV from here on ({error})"))
    return LabelledFile(str(path), examples, problems, kind)


def _jsonl(path: Path, text: str) -> LabelledFile:
    examples, problems = [], []
    kind = None
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except RecursionError:
            problems.append(RowProblem(line, "not JSON this reader takes (nested too deeply)"))
            continue
        except ValueError as error:  # a JSONDecodeError has msg; a too-long number does not
            problems.append(RowProblem(line, f"not JSON ({getattr(error, 'msg', error)})"))
            continue
        if not isinstance(record, dict):
            problems.append(RowProblem(line, "not a JSON object with text and label"))
            continue
        if kind is None:  # the first object says what the file holds
            kind = "pairs" if {"prompt", "response"} & set(record) else "labelled"
        (first, _), (second, _) = SCHEMAS[kind]
        _checked(kind, line, (record.get(first), record.get(second)), examples, problems)
    if not examples and not problems:
        raise LabelledFileError(f"{path.name}: empty; give one JSON object a line")
    return LabelledFile(str(path), examples, problems, kind or "labelled")


LABELLED_CSV = "labelled.csv"
LABELLED_MANIFEST = "labelled.json"


@dataclass(frozen=True)
class LabelledSet:
    """An agent's labelled examples from every labelled upload, each text once; `version`
    hashes the (text, label) pairs: the same examples, the same version."""

    agent_id: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]  # "file:line" of each example's first occurrence
    version: str
    conflicts: tuple[str, ...] = ()  # texts given two labels: the first label was kept
    path: str = ""  # the CSV, once written
    created_at: str = ""

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for label in self.labels:
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


def collect_examples(
    agent_id: str, files: list[tuple[str, list[LabelledExample]]], corrections=()
) -> LabelledSet:
    """One set from (file, examples) pairs in upload order, then the labels users gave the
    agent's answers (`Correction`s, oldest first). A text seen again with the same label is
    kept once; seen again with another label, the first label stays and the text is named as a
    conflict. Uploads come first: a user's label never overrides the agent's own files. Of
    several users' labels for one text, the most given wins (the latest on a tie), its source
    the query that gave it last."""
    import hashlib

    chosen: dict[str, tuple[str, str]] = {}
    conflicts: list[str] = []
    for name, examples in files:
        for example in examples:
            _choose(chosen, conflicts, example.text, example.label, f"{name}:{example.line}")
    for text, (label, source) in _agreed(corrections).items():
        _choose(chosen, conflicts, text, label, source)
    digest = hashlib.sha256()
    for text in sorted(chosen):
        digest.update(f"{text}\0{chosen[text][0]}\n".encode())
    texts = tuple(chosen)
    return LabelledSet(
        agent_id=agent_id,
        texts=texts,
        labels=tuple(chosen[text][0] for text in texts),
        sources=tuple(chosen[text][1] for text in texts),
        version=digest.hexdigest()[:16],
        conflicts=tuple(conflicts),
    )


QUERY_SOURCE = "query:"  # the source of an example a user's label gave: query:<query id>


def _choose(chosen: dict, conflicts: list, text: str, label: str, source: str) -> None:
    first = chosen.get(text)
    if first is None:
        chosen[text] = (label, source)
    elif first[0] != label:
        conflicts.append(
            f"{source} labels a text {label!r}, {first[1]} gave it {first[0]!r}: {first[0]!r} kept"
        )


def _agreed(corrections) -> dict[str, tuple[str, str]]:
    """Each corrected text's label: each user's latest for it, then the most given (the
    latest on a tie), with the query of its latest giving."""
    latest: dict[tuple[str, str], object] = {}
    for correction in corrections:  # oldest first: a user's later label replaces theirs
        latest[(correction.text, correction.user_id)] = correction
    votes: dict[str, dict[str, list]] = {}
    for correction in latest.values():
        votes.setdefault(correction.text, {}).setdefault(correction.label, []).append(correction)
    agreed = {}
    for text, labels in votes.items():
        label, given = max(
            labels.items(), key=lambda item: (len(item[1]), max(c.at for c in item[1]))
        )
        last = max(given, key=lambda c: c.at)
        agreed[text] = (label, f"{QUERY_SOURCE}{last.query_id}")
    return agreed


def write_labelled(processed_dir: Path, examples: LabelledSet, created_at: str) -> LabelledSet:
    """The set as labelled.csv (text, label, source) and its manifest labelled.json, each
    written whole; the manifest goes last, so a reader never finds one without the other."""
    from dataclasses import replace

    from thunder_dagster.files import write_atomically

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["text", "label", "source"])
    writer.writerows(zip(examples.texts, examples.labels, examples.sources, strict=True))
    path = Path(processed_dir) / LABELLED_CSV
    write_atomically(path, buffer.getvalue().encode("utf-8"))
    written = replace(examples, path=str(path), created_at=created_at)
    manifest = {
        "agent_id": written.agent_id,
        "version": written.version,
        "rows": len(written.texts),
        "labels": written.counts(),
        "path": written.path,
        "created_at": created_at,
    }
    write_atomically(Path(processed_dir) / LABELLED_MANIFEST, json.dumps(manifest).encode())
    return written


def read_labelled_set(path: str | Path) -> tuple[list[str], list[str]]:
    """The texts and labels of a labelled.csv that write_labelled wrote."""
    with open(path, encoding="utf-8", newline="") as rows:
        pairs = [(row["text"], row["label"]) for row in csv.DictReader(rows)]
    return [text for text, _ in pairs], [label for _, label in pairs]


def latest_labelled(processed_dir: Path) -> dict | None:
    """The manifest of the agent's labelled examples (version, rows, labels); None without."""
    try:
        return json.loads((Path(processed_dir) / LABELLED_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
