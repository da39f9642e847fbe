"""The testinfra suite of a deployed kubefab cluster. Run by `fab verify --inventory F`, or directly as
testinfra users do:

    pytest playbooks/hostsuite --hosts=ssh://user@10.0.0.11,ssh://user@10.0.0.12 --sudo --inventory inventory/x.yaml

Each testinfra host is matched to its inventory host (by address or name) to know its roles."""

from __future__ import annotations

import os

import pytest

from kubefab.playbooks.hostsuite.nodes import Node
from kubefab.playbooks.inventory import load
from kubefab.playbooks.model import Cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--inventory",
        default=os.environ.get("KUBEFAB_INVENTORY"),
        help="the kubefab inventory the hosts were deployed from (default: $KUBEFAB_INVENTORY)",
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    path = request.config.getoption("--inventory")
    if not path:
        pytest.fail("pass --inventory FILE (or set KUBEFAB_INVENTORY): the checks depend on each host's roles")
    return load(path)


@pytest.fixture(scope="module")
def node(host, cluster: Cluster) -> Node:
    name = host.backend.get_hostname()
    for h in cluster.hosts:
        if name in (str(h.address), h.name):
            return Node(cluster, h)
    pytest.fail(f"{name} is not a host of inventory {cluster.source}")
