"""Known-item retrieval quality: queries made from an agent's own chunks, each of which must
find its chunk.

A query is one sentence of a chunk with a third of its words dropped (at random, seeded) and
the rest lowercased, so that neither exact wording nor case can carry it. Recall@k counts the
queries whose chunk is among the top k; MRR averages 1/rank of that chunk (0 past the depth).
"""

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from thunder_dagster.retrieval.vectors import ChunkRecord

SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
MIN_WORDS = 6
DEPTH = 5


@dataclass(frozen=True)
class KnownItem:
    chunk_id: str
    query: str


@dataclass(frozen=True)
class Quality:
    queries: int
    recall: float  # at DEPTH
    mrr: float
    misses: list[KnownItem]


def known_item(chunk: ChunkRecord, rng: random.Random) -> KnownItem | None:
    """A query for `chunk`, or None when no sentence of it has MIN_WORDS words."""
    sentences = [s.split() for s in SENTENCE.findall(chunk.text)]
    sentences = [words for words in sentences if len(words) >= MIN_WORDS]
    if not sentences:
        return None
    words = rng.choice(sentences)
    dropped = set(rng.sample(range(len(words)), len(words) // 3))
    kept = [word.lower() for index, word in enumerate(words) if index not in dropped]
    return KnownItem(chunk.chunk_id, " ".join(kept))


def known_items(chunks: list[ChunkRecord], count: int, seed: int = 0) -> list[KnownItem]:
    """Up to `count` queries from chunks drawn evenly at random (seeded) from all of them."""
    rng = random.Random(seed)
    order = list(range(len(chunks)))
    rng.shuffle(order)
    items = []
    for index in order:
        item = known_item(chunks[index], rng)
        if item is not None:
            items.append(item)
            if len(items) == count:
                break
    return items


def measure(items: list[KnownItem], search: Callable[[str, int], list[str]]) -> Quality:
    """`search(query, k)` -> chunk ids, best first."""
    found, reciprocal, misses = 0, 0.0, []
    for item in items:
        ranked = search(item.query, DEPTH)
        if item.chunk_id in ranked:
            found += 1
            reciprocal += 1.0 / (ranked.index(item.chunk_id) + 1)
        else:
            misses.append(item)
    total = len(items)
    return Quality(
        queries=total,
        recall=found / total if total else math.nan,
        mrr=reciprocal / total if total else math.nan,
        misses=misses,
    )
