"""Shared helpers: render the example inventory (with changes) into plans, without any host."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from kubefab.playbooks.clusterdir import ensure_inputs
from kubefab.playbooks.components import host_plans
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster
from kubefab.playbooks.plan import Plan

EXAMPLE = Path(__file__).parents[1] / "inventory" / "example.yaml"


class Rendered:
    def __init__(self, cluster: Cluster, inputs: Inputs) -> None:
        self.cluster = cluster
        self.inputs = inputs
        self.plans: dict[str, list[Plan]] = {h.name: host_plans(inputs, h) for h in cluster.hosts}

    def files(self, host: str) -> dict[str, bytes]:
        return {f.path: f.content for p in self.plans[host] for f in p.files}

    def text(self, host: str, path: str) -> str:
        return self.files(host)[path].decode()


@pytest.fixture
def render_example(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Rendered]:
    """render_example(mutate=None): the example inventory, optionally changed by `mutate(data)`, rendered."""

    def run(mutate: Callable[[dict], object] | None = None) -> Rendered:
        tmp = tmp_path_factory.mktemp("render")
        data = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
        data |= {"cluster_dir": str(tmp / "cluster"), "bundle": str(tmp / "bundle")}
        if mutate is not None:
            mutate(data)
        (tmp / "inventory.yaml").write_text(yaml.safe_dump(data))
        cluster = load(tmp / "inventory.yaml")
        return Rendered(cluster, ensure_inputs(cluster))

    return run


@pytest.fixture(scope="module")
def example_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """The example inventory's inputs with its PKI and secrets written to a scratch cluster directory."""
    tmp = tmp_path_factory.mktemp("example")
    data = yaml.safe_load(EXAMPLE.read_text()) | {"cluster_dir": str(tmp / "cluster"), "bundle": str(tmp / "b")}
    (tmp / "inventory.yaml").write_text(yaml.safe_dump(data))
    return ensure_inputs(load(tmp / "inventory.yaml"))
