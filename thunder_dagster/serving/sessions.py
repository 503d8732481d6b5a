"""What every served model's loading shares: its files read back and checked against the hashes
its release recorded, onnxruntime sessions with the configured thread count, and the errors
that refuse a model. onnxruntime and numpy only."""

import hashlib
from pathlib import Path

from thunder_dagster import settings


class NoDeploymentError(LookupError):
    pass


class RefusedModelError(RuntimeError):
    """A deployed file that must not serve: changed since its checks, or unusable."""


def verified_bytes(path: str, expected: str | None) -> bytes:
    data = Path(path).read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise RefusedModelError(
            f"{path} does not match the hash its deployment recorded; redeploy or roll back"
        )
    return data


def onnx_session(path_or_bytes, threads: int | None = None):
    """An onnxruntime CPU session with every graph optimisation, on `threads` threads (default:
    THUNDER_ORT_THREADS, else the CPUs this process may use)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or settings.threads(settings.ORT_THREADS)
    return onnxruntime.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])
