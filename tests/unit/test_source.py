"""The pure parts of building release files from source: the wrapper module, version flags, layouts, and the
reference parsers. The builds themselves run for real in the lab fixture (tests/lab)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from kubefab.playbooks import components, reference, source, versions
from kubefab.playbooks.archive import tar_gz

K8S_GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/x/y v1.2.3
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/x/y v1.2.3 => github.com/x/y v1.2.4
)
"""
ETCD_GOMOD = """module go.etcd.io/etcd/server/v3

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgo.etcd.io/etcd/pkg/v3 => ../pkg
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_local_replaces_are_the_repository_s_own_modules() -> None:
    assert source.local_replaces(K8S_GOMOD) == ["k8s.io/api", "k8s.io/client-go"]
    assert source.local_replaces(ETCD_GOMOD) == ["go.etcd.io/etcd/api/v3", "go.etcd.io/etcd/pkg/v3"]


def test_companions_are_pinned_to_their_published_versions() -> None:
    assert source.companion_version("k8s.io/kubernetes", "1.37.2") == "v0.37.2"
    assert source.companion_version("go.etcd.io/etcd/server/v3", "3.7.3") == "v3.7.3"


def test_wrapper_module_requires_the_release_and_replaces_each_companion() -> None:
    recipe = source.RECIPES["kubernetes_server"]
    text = source.wrapper_gomod(recipe, "1.37.2", "1.26.8", ["k8s.io/api", "k8s.io/client-go"])
    assert "go 1.26.8\n" in text
    assert "\tk8s.io/kubernetes v1.37.2\n" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2\n" in text and "\tk8s.io/client-go => k8s.io/client-go v0.37.2\n" in text
    assert "require (\n\tk8s.io/kubernetes v1.37.2\n)" in text  # companions are replaced, never required
    for name in source.KUBE_COMMANDS:
        assert f"\tk8s.io/kubernetes/cmd/{name}\n" in text


def test_version_flags_make_each_binary_print_its_release() -> None:
    flags = source.ldflags(source.RECIPES["kubernetes_server"], "1.37.2", "abc123", "2026-10-27T12:01:04Z")
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "-X k8s.io/client-go/pkg/version.gitMinor=37" in flags
    assert "-X k8s.io/component-base/version.gitCommit=abc123" in flags
    assert flags.startswith("-s -w ")
    assert "version.Version=v2.4.2" in source.ldflags(source.RECIPES["containerd"], "2.4.2", "", "d")
    assert "main.version=1.5.3" in source.ldflags(source.RECIPES["runc"], "1.5.3", "", "d")
    assert "Revision=unknown" in source.ldflags(source.RECIPES["containerd"], "2.4.2", "", "d")


def test_commands_with_the_same_settings_share_one_go_build() -> None:
    groups = source.build_groups(source.RECIPES["kubernetes_server"])
    assert len(groups) == 1 and len(groups[0][3]) == 6
    shim = [g for g in source.build_groups(source.RECIPES["containerd"]) if "no_grpc" in g[0]]
    assert [c.name for c in shim[0][3]] == ["containerd-shim-runc-v2"]
    ((tags, cgo, static, _),) = source.build_groups(source.RECIPES["runc"])
    assert cgo and static and "seccomp" in tags


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("go.etcd.io/etcd/server/v3", "server"),
        ("k8s.io/kubernetes/cmd/kubelet", "kubelet"),
        ("github.com/opencontainers/runc", "runc"),
    ],
)
def test_binary_names_follow_go_build(package: str, name: str) -> None:
    assert source.default_binary_name(package) == name


def test_release_layouts_match_what_deploy_extracts(tmp_path: Path) -> None:
    """Every member the plans read from a release file is where the source build packs it."""
    stack = versions.stack(versions.default_minor())
    installed = [b for comp in components.DAEMONS for b in comp.binaries(stack, "amd64")]
    for recipe in source.RECIPES.values():
        version = getattr(stack, recipe.component, stack.kubernetes)
        binary = tmp_path / "b"
        binary.write_bytes(b"\x7fELF")
        members = source.pack_members(recipe.component, version, "amd64", {c.name: binary for c in recipe.commands})
        rel = versions.release(recipe.component, version, "amd64").bundle_path
        wanted = {b.member for b in installed if b.source == rel}
        assert wanted, recipe.component
        if members is None:
            assert wanted == {None}, recipe.component
            continue
        with tarfile.open(fileobj=io.BytesIO(tar_gz(members))) as tar:
            names = {n.removeprefix("./") for n in tar.getnames()}
        assert wanted <= names, (recipe.component, wanted - names)


def test_help_parser_reads_flags_wrapped_descriptions_and_deprecations() -> None:
    text = """Usage:
  kubelet [flags]

Generic flags:

      --address ip                 The IP address for the Kubelet to serve on (set to '0.0.0.0' for all
                                   interfaces) (default 0.0.0.0) (DEPRECATED: This parameter should be set
                                   via the config file specified by the Kubelet's --config flag.)
      --config string              The Kubelet will load its initial configuration from this file.
  -h, --help                       help for kubelet
  -v, --v Level                    number for the log level verbosity

Other flags:
      --version version[=true]     Print version information and quit
"""
    assert reference.parse_help(text) == {"address": True, "config": False, "help": False, "v": False, "version": False}
    assert reference.flags_file("kubelet", "1.37.2", {"config": False, "address": True}).splitlines()[1:] == [
        "address deprecated",
        "config",
    ]
