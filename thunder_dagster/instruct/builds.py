"""The base built for serving: its ONNX graph checked against the float reference, written
with its card into `$THUNDER_HOME/bases/<file hash>/`, and loaded back (hash checked) by the
server and the CLI. The build takes seconds, so whoever needs the base first builds it.

Parity: on fixed chat prompts the graph answers greedily; at every step its logits are
compared with the reference forward pass over the same tokens. The graph's output is 8-bit
but its highest logits are computed again in float (graphs.py), so the highest must match
closely and the rest within the 8-bit tolerance; a sequence agrees when every step picks the
reference's token.
"""

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.instruct.base import BaseFile, BaseSpec, Provenance
from thunder_dagster.instruct.decoding import BaseModel, Sampling
from thunder_dagster.instruct.graphs import CANDIDATES
from thunder_dagster.instruct.tokens import BaseTokenizer, Message
from thunder_dagster.modeling.cards import CARD_NAME
from thunder_dagster.modeling.cards import ONNX_NAME as MODEL_NAME

# The context the graph is built for: the rotary tables' length. Chat turns, the grounding
# sentences and the answer fit in it with room to spare.
POSITIONS = 4096
PARITY_PROMPTS = (
    "What is the capital of France?",
    "Name three things a baker does before sunrise.",
    "Write one sentence about keeping bread fresh.",
)
PARITY_STEPS = 12
# Tolerances, in logits: the float-computed candidates (float32 sums in another order), and
# every logit (the 8-bit output's activations are rounded to int8 per 32 values).
CANDIDATE_TOLERANCE = 1e-3
# The highest logits held to the float tolerance: well inside the CANDIDATES the graph
# computes in float (the lowest of those may fall below an 8-bit one once corrected).
CHECKED = CANDIDATES // 4
LOGIT_TOLERANCE = 1.0


class BaseBuildError(RuntimeError):
    """The built graph does not match the reference within the tolerances."""


@dataclass(frozen=True)
class ParityReport:
    prompts: int
    steps: int
    agreeing_steps: int  # steps where the graph's greedy token is the reference's
    agreeing_sequences: int  # prompts whose greedy answers agree token for token
    max_candidate_error: float
    max_logit_error: float

    @property
    def passed(self) -> bool:
        return (
            self.max_candidate_error <= CANDIDATE_TOLERANCE
            and self.max_logit_error <= LOGIT_TOLERANCE
            and self.agreeing_steps == self.steps
        )


@dataclass(frozen=True)
class InstructCard:
    provenance: Provenance
    spec: BaseSpec
    positions: int
    model_sha256: str
    model_bytes: int
    parity: ParityReport
    built_at: str
    build_seconds: float

    def write(self, folder: Path) -> Path:
        path = folder / CARD_NAME
        write_atomically(path, json.dumps(dataclasses.asdict(self), indent=2).encode())
        return path

    @classmethod
    def read(cls, folder: Path) -> "InstructCard":
        raw = json.loads((folder / CARD_NAME).read_text())
        return cls(
            **{
                **raw,
                "provenance": Provenance(**raw["provenance"]),
                "spec": BaseSpec(**raw["spec"]),
                "parity": ParityReport(**raw["parity"]),
            }
        )


def base_folder(bases_dir: Path, base: BaseFile) -> Path:
    return bases_dir / base.sha256[:16]


def session_for(model, threads: int | None = None):
    from thunder_dagster.serving.sessions import onnx_session

    return onnx_session(model, threads)


def check_parity(model: BaseModel, base: BaseFile) -> ParityReport:
    """The graph's greedy answers to PARITY_PROMPTS against the reference, step by step."""
    from thunder_dagster.instruct.reference import float_weights, forward

    weights = float_weights(base)
    steps = agreeing = sequences = 0
    candidate_error = logit_error = 0.0
    for prompt in PARITY_PROMPTS:
        ids = model.tokenizer.chat_prompt([Message("user", prompt)])
        agreed = True
        for logits, produced in model.logits_along(ids, PARITY_STEPS):
            reference = forward(weights, [*ids, *produced])[-1]
            top = np.argsort(logits)[::-1][:CHECKED]
            candidate_error = max(
                candidate_error, float(np.abs(logits[top] - reference[top]).max())
            )
            logit_error = max(logit_error, float(np.abs(logits - reference).max()))
            same = int(np.argmax(logits)) == int(np.argmax(reference))
            steps, agreeing, agreed = steps + 1, agreeing + same, agreed and same
        sequences += agreed
    return ParityReport(
        prompts=len(PARITY_PROMPTS),
        steps=steps,
        agreeing_steps=agreeing,
        agreeing_sequences=sequences,
        max_candidate_error=candidate_error,
        max_logit_error=logit_error,
    )


def build_base(bases_dir: Path, base: BaseFile | None = None) -> InstructCard:
    """Build, check and write the base's graph; BaseBuildError (nothing written) when it
    does not match the reference."""
    import time

    from thunder_dagster.instruct.graphs import build_graph

    started = time.perf_counter()
    base = base or BaseFile()
    base.verify()
    data = build_graph(base, positions=POSITIONS).SerializeToString()
    model = BaseModel(session_for(data), BaseTokenizer(base), base.spec, POSITIONS)
    parity = check_parity(model, base)
    if not parity.passed:
        raise BaseBuildError(
            f"the base's graph does not match the reference: {parity}; tolerances "
            f"{CANDIDATE_TOLERANCE} (candidates) and {LOGIT_TOLERANCE} (all logits)"
        )
    folder = base_folder(bases_dir, base)
    staging = folder.with_name(f".{folder.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_atomically(staging / MODEL_NAME, data)
    card = InstructCard(
        provenance=base.provenance(),
        spec=base.spec,
        positions=POSITIONS,
        model_sha256=sha256_of(staging / MODEL_NAME),
        model_bytes=len(data),
        parity=parity,
        built_at=datetime.now(UTC).isoformat(),
        build_seconds=round(time.perf_counter() - started, 2),
    )
    card.write(staging)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return card


def load_base(bases_dir: Path, threads: int | None = None, build: bool = True):
    """(BaseModel, InstructCard) from the built folder, its model's hash checked; built
    first when absent (or unreadable) and `build`."""
    from thunder_dagster.serving.sessions import RefusedModelError

    base = BaseFile()
    folder = base_folder(bases_dir, base)
    try:
        card = InstructCard.read(folder)
    except (OSError, ValueError, TypeError, KeyError):
        if not build:
            raise
        card = build_base(bases_dir, base)
    if card.provenance.sha256 != base.sha256:
        raise RefusedModelError(f"{folder} was built from another file: rebuild the base")
    path = folder / MODEL_NAME
    if sha256_of(path) != card.model_sha256:
        raise RefusedModelError(
            f"{path} does not match the hash its card recorded; rebuild the base "
            "(materialize instruct_base, or delete the folder and a server rebuilds it)"
        )
    # Loaded from the path, not from bytes read here: onnxruntime would keep the bytes' copy
    # beside its own (140 MiB more resident). The folder is the server's own cache, written
    # whole by a rename; a change after the check would still have to pass the graph's load.
    session = session_for(str(path), threads)
    return BaseModel(session, BaseTokenizer(base), card.spec, card.positions), card


ADAPTED_NAME = "adapted.onnx"
ADAPTED_CARD_NAME = "adapted.json"


def build_adapted(bases_dir: Path, loaded, threads: int | None = None) -> dict:
    """The adapted graph (every projection taking an agent's adapter as inputs) written beside
    the base's, after checking that with zero adapters its first logits on PARITY_PROMPTS are
    those of the loaded base (load_base's pair) within CANDIDATE_TOLERANCE; its card.
    BaseBuildError when they are not."""
    from thunder_dagster.adapters.files import graph_feeds
    from thunder_dagster.instruct.graphs import build_graph

    plain, card = loaded
    base = BaseFile()
    data = build_graph(base, positions=card.positions, adapted=True).SerializeToString()
    adapted = BaseModel(session_for(data, threads), plain.tokenizer, card.spec, card.positions)
    zero = adapted.with_adapter(graph_feeds(None, card.spec))
    error = 0.0
    for prompt in PARITY_PROMPTS:
        ids = plain.tokenizer.chat_prompt([Message("user", prompt)])
        (expected, _), (got, _) = next(plain.logits_along(ids, 1)), next(zero.logits_along(ids, 1))
        top = np.argsort(expected)[::-1][:CHECKED]
        error = max(error, float(np.abs(got[top] - expected[top]).max()))
    if error > CANDIDATE_TOLERANCE:
        raise BaseBuildError(
            f"the adapted graph with zero adapters differs from the base graph by {error:.3g}"
        )
    folder = base_folder(bases_dir, base)
    write_atomically(folder / ADAPTED_NAME, data)
    adapted_card = {
        "model_sha256": sha256_of(folder / ADAPTED_NAME),
        "model_bytes": len(data),
        "zero_adapter_error": error,
        "built_at": datetime.now(UTC).isoformat(),
    }
    write_atomically(folder / ADAPTED_CARD_NAME, json.dumps(adapted_card, indent=2).encode())
    return adapted_card


def load_adapted(
    bases_dir: Path, loaded, threads: int | None = None, build: bool = True
) -> BaseModel:
    """The adapted graph, loaded once for every agent that has an adapter (each answers with
    `with_adapter` and its own matrices), sharing the loaded base's tokenizer (load_base's
    pair); built first when absent and `build`."""
    from thunder_dagster.serving.sessions import RefusedModelError

    model, card = loaded
    folder = base_folder(bases_dir, BaseFile())
    try:
        adapted_card = json.loads((folder / ADAPTED_CARD_NAME).read_text())
    except (OSError, ValueError):
        if not build:
            raise
        adapted_card = build_adapted(bases_dir, loaded, threads)
    path = folder / ADAPTED_NAME
    if sha256_of(path) != adapted_card.get("model_sha256"):
        raise RefusedModelError(
            f"{path} does not match the hash {ADAPTED_CARD_NAME} recorded; delete both and "
            "the next load builds them again"
        )
    return BaseModel(session_for(str(path), threads), model.tokenizer, card.spec, card.positions)


def generate_once(model: BaseModel, question: str, max_tokens: int = 32) -> str:
    """A greedy answer to one user message (the CLI's smoke answer)."""
    prompt = model.tokenizer.chat_prompt([Message("user", question)])
    return model.complete(prompt, Sampling(max_tokens=max_tokens)).text
