"""The two files that tell a server how to rank an agent's answers, each with one writer and
one reader: reward.json (the reward model that serves, written by reward_model once its checks
pass) and best_of.json (the best-of-n a promoted A/B test adopted, written by
champion_promotion). Both beside the agent's role pointers, both written atomically."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from thunder_dagster.deployments.pointers import BEST_OF_NAME, REWARD_NAME
from thunder_dagster.files import write_atomically

MAX_BEST_OF = 8


@dataclass(frozen=True)
class RewardPointer:
    agent_id: str
    version: str
    onnx_path: str
    onnx_sha256: str
    encoder: str  # the sentence encoder whose vectors it scores
    deployed_at: str  # UTC, ISO 8601

    def write(self, deployments_dir: Path) -> Path:
        path = Path(deployments_dir) / REWARD_NAME
        write_atomically(path, json.dumps(asdict(self), indent=2).encode())
        return path

    @classmethod
    def read(cls, path: Path) -> "RewardPointer":
        """The pointer at `path`; ValueError naming the file when it cannot be used."""
        named = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(named, dict) or not {"onnx_path", "onnx_sha256"} <= set(named):
            raise ValueError(f"{Path(path).name} does not name a reward graph and its hash")
        return cls(
            agent_id=str(named.get("agent_id", "")),
            version=str(named.get("version", "")),
            onnx_path=str(named["onnx_path"]),
            onnx_sha256=str(named["onnx_sha256"]),
            encoder=str(named.get("encoder")),
            deployed_at=str(named.get("deployed_at", "")),
        )


@dataclass(frozen=True)
class AdoptedBestOf:
    best_of: int
    champion_version: str  # the champion whose best-of-n the test promoted
    since: str  # UTC, ISO 8601

    def write(self, deployments_dir: Path) -> Path:
        path = Path(deployments_dir) / BEST_OF_NAME
        write_atomically(path, json.dumps(asdict(self)).encode())
        return path

    @classmethod
    def read(cls, path: Path) -> "AdoptedBestOf":
        """The adopted best-of-n at `path`; ValueError or KeyError when it cannot be used."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        count = data["best_of"]
        if not isinstance(count, int) or not 1 <= count <= MAX_BEST_OF:
            raise ValueError(f"best_of {count!r} is not a whole number from 1 to {MAX_BEST_OF}")
        return cls(count, str(data.get("champion_version", "")), str(data.get("since", "")))
