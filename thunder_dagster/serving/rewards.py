"""The reward models a server ranks candidate answers with (generate's `best_of`).

Each agent's deployments/<agent>/reward.json names its reward graph (features -> score), which
is loaded on the first ranked request and again whenever the pointer changes. A pointer that
cannot be read, a graph whose hash differs from it, or one made for another sentence encoder
is refused with its reason (the request is answered with one candidate and says why); the
reward model loaded before keeps ranking. onnxruntime and numpy only.
"""

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.deployments.pointers import BEST_OF_NAME, REWARD_NAME
from thunder_dagster.deployments.rewards import AdoptedBestOf, RewardPointer
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.modeling.heads import FEATURES, SCORE
from thunder_dagster.serving.watching import public_reason


class RewardUnavailableError(LookupError):
    """No reward model to rank with: the message says why, without file system paths."""


@dataclass(frozen=True)
class LoadedReward:
    version: str
    encoder: str
    session: object

    def scores(self, prompt_vector: np.ndarray, answer_vectors: np.ndarray) -> np.ndarray:
        """The predicted 1-5 score of each answer to the prompt."""
        prompts = np.repeat(prompt_vector[None, :], len(answer_vectors), axis=0)
        x = np.concatenate([prompts, answer_vectors, prompts * answer_vectors], axis=1)
        (scores,) = self.session.run([SCORE], {FEATURES: x.astype(np.float32)})
        return scores.reshape(-1)


class RewardModels:
    def __init__(self, deployments_root: Path, encoder_version):
        self.root = Path(deployments_root)
        self.encoder_version = encoder_version  # () -> the server's encoder version, or None
        self.loaded: dict[str, tuple[tuple, LoadedReward]] = {}
        self.refused: dict[str, str] = {}
        self.adopted: dict[str, tuple[tuple, int]] = {}
        self.lock = threading.Lock()

    def get(self, agent_id: str) -> LoadedReward:
        """The agent's reward model, loaded again when its pointer changed."""
        if not AGENT_ID_PATTERN.fullmatch(agent_id):
            raise RewardUnavailableError(f"unknown agent {agent_id!r}")
        path = self.root / agent_id / REWARD_NAME
        try:
            status = path.stat()
        except OSError:
            raise RewardUnavailableError(
                f"agent {agent_id!r} has no reward model yet: materialize reward_model once "
                "its answers are rated"
            ) from None
        signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        with self.lock:
            held = self.loaded.get(agent_id)
            if held is not None and held[0] == signature:
                return held[1]
            try:
                reward = self._load(path)
            except Exception as error:
                self.refused[agent_id] = public_reason(error)
                if held is not None:
                    return held[1]  # the one loaded before keeps ranking
                raise RewardUnavailableError(
                    f"agent {agent_id!r}'s reward model was refused: {self.refused[agent_id]}"
                ) from error
            self.loaded[agent_id] = (signature, reward)
            self.refused.pop(agent_id, None)
            return reward

    def _load(self, pointer: Path) -> LoadedReward:
        import hashlib

        import onnxruntime

        named = RewardPointer.read(pointer)
        served = self.encoder_version()
        if served is not None and named.encoder != served:
            raise ValueError(
                f"the reward model was trained on the vectors of {named.encoder!r}, the "
                f"server encodes with {served!r}; train reward_model again"
            )
        data = Path(named.onnx_path).read_bytes()
        if hashlib.sha256(data).hexdigest() != named.onnx_sha256:
            raise ValueError(f"{pointer.name}: the reward graph does not match its hash")
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        width = session.get_inputs()[0].shape[1]
        probe = np.zeros((1, width), np.float32)
        (score,) = session.run([SCORE], {FEATURES: probe})
        if not np.all(np.isfinite(score)):
            raise ValueError(f"{pointer.name}: the reward graph's probe score is not finite")
        return LoadedReward(named.version, named.encoder, session)

    def default_best_of(self, agent_id: str) -> int:
        """The best-of-n the agent adopted (deployments/<agent>/best_of.json, from a promoted
        A/B test); 1 without one, or when the file cannot be used (then /healthz says why)."""
        path = self.root / agent_id / BEST_OF_NAME
        try:
            status = path.stat()
        except OSError:
            self.adopted.pop(agent_id, None)
            return 1
        signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        held = self.adopted.get(agent_id)
        if held is not None and held[0] == signature:
            return held[1]
        try:
            count = AdoptedBestOf.read(path).best_of
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.refused[agent_id] = f"{BEST_OF_NAME}: {public_reason(error)}"
            count = 1
        self.adopted[agent_id] = (signature, count)
        return count

    def problems(self) -> list[dict]:
        return [
            {"agent": agent_id, "reason": f"reward model refused: {why}"}
            for agent_id, why in sorted(self.refused.items())
        ]
