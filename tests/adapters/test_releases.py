"""Adapter releases and how a server serves them: the first adapter is the champion and a
later one the challenger, promote and rollback move them like a model's roles, the A/B test
looks at the adapters' folder while an adapter is the challenger, and a server answers each
user with its variant's adapter, keeping the one in service when a new file does not load."""

import dataclasses

import numpy as np
import pytest

from thunder_dagster.adapters.files import ARRAYS_NAME, Adapter
from thunder_dagster.adapters.keras_base import AdapterShape
from thunder_dagster.adapters.releases import (
    AdapterCard,
    ab_folder,
    adapter_dir,
    release_adapter,
)
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.deployments.registry import NoRegistry
from thunder_dagster.deployments.releases import promote, rollback
from thunder_dagster.instruct.base import BaseFile
from thunder_dagster.instruct.graphs import adapter_inputs
from thunder_dagster.serving.adapters import AgentAdapters

CARD = AdapterCard("sha", {"rank": 2}, {"questions": 1.0}, {"questions": 1.2}, 1e-5, {})


@pytest.fixture(scope="module")
def spec():
    """The pinned base's shapes, cut to two blocks: adapters of a few kilobytes."""
    return dataclasses.replace(BaseFile().spec, layers=2)


def adapter(spec, seed: int) -> Adapter:
    rng = np.random.default_rng(seed)
    shape = AdapterShape(rank=2, alpha=2.0, targets=("attn_q",))
    arrays = {
        f"{layer}.attn_q": (
            rng.normal(size=(spec.width, 2)).astype(np.float32),
            rng.normal(size=(2, spec.heads * spec.head_dim)).astype(np.float32),
        )
        for layer in range(spec.layers)
    }
    return Adapter(shape, arrays)


def test_the_first_adapter_is_champion_a_later_one_challenger_and_both_roles_move(tmp_path, spec):
    deployments = tmp_path / "acme"
    first = release_adapter(deployments, "acme", adapter(spec, 0), CARD)
    assert (first.role, first.deployment.version, first.previous) == ("champion", "adapter-1", None)
    assert ab_folder(deployments) == deployments  # no adapter challenger: the model's folder
    second = release_adapter(deployments, "acme", adapter(spec, 1), CARD)
    assert (second.role, second.deployment.version) == ("challenger", "adapter-2")
    folder = adapter_dir(deployments)
    assert ab_folder(deployments) == folder
    assert Adapter.load(folder / "versions" / "adapter-2", spec).arrays.keys() == {
        "0.attn_q",
        "1.attn_q",
    }
    promote(folder, NoRegistry())
    assert (
        read_pointer(folder).version == "adapter-2" and read_pointer(folder, "challenger") is None
    )
    moved = rollback(folder, NoRegistry())
    assert (moved.deployment.version, moved.previous.version) == ("adapter-1", "adapter-2")
    assert read_pointer(folder).version == "adapter-1"


def test_a_server_serves_each_user_their_variants_adapter_and_keeps_it_when_a_file_breaks(
    tmp_path, spec
):
    root = tmp_path / "deployments"
    served = AgentAdapters(root)
    assert served.for_user("acme", "ann", spec, lambda version: 0.5) == ("champion", None)
    release_adapter(root / "acme", "acme", adapter(spec, 0), CARD)
    variant, champion = served.for_user("acme", "ann", spec, lambda version: 0.5)
    assert (variant, champion.version) == ("champion", "adapter-1")
    expected = adapter(spec, 0).arrays["1.attn_q"][0]
    a_name, _ = adapter_inputs("layer1.qkv")
    np.testing.assert_array_equal(champion.feeds[a_name][:, :2], expected)
    release_adapter(root / "acme", "acme", adapter(spec, 1), CARD)
    users = [f"user-{i}" for i in range(40)]
    variants = {served.for_user("acme", user, spec, lambda v: 0.5)[0] for user in users}
    assert variants == {"champion", "challenger"}
    assert {served.for_user("acme", user, spec, lambda v: 0.0)[0] for user in users} == {"champion"}
    # The challenger's file is damaged after its release: refused, with the reason; the
    # champion keeps answering everyone.
    challenger = read_pointer(adapter_dir(root / "acme"), "challenger")
    with open(f"{challenger.model_dir}/{ARRAYS_NAME}", "ab") as handle:
        handle.write(b"junk")
    served = AgentAdapters(root)
    assert {served.for_user("acme", user, spec, lambda v: 0.5)[1].version for user in users} == {
        "adapter-1"
    }
    (problem,) = served.problems()
    assert problem["agent"] == "acme" and "challenger adapter refused" in problem["reason"]
    assert "sha256" in problem["reason"]
