"""What an export's gates found, as plain records: the assets, the sensors' metadata and the
cards read these without loading numpy, ONNX or TensorFlow."""

from dataclasses import dataclass

EXPORT_CHECKS = ("parity", "finite_outputs", "better_than_unigram", "step_parity")


@dataclass(frozen=True)
class Parity:
    max_abs_difference: float
    argmax_agreement: float
    finite: bool
    probe_shape: tuple[int, ...]

    def passed(self, tolerance: float) -> bool:
        return self.max_abs_difference <= tolerance and self.argmax_agreement == 1.0


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    description: str
    details: dict


@dataclass(frozen=True)
class ExportReport:
    onnx_path: str
    onnx_sha256: str
    family: str
    parity: Parity
    onnx_test_loss: float  # the ONNX graph's loss on the test split
    unigram_loss: float  # on the same test text
    latency_ms: dict
    checks: list[Check]
    step_path: str | None = None
    step_sha256: str | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)
