"""Second line of defence: a value that got past validation (here put in with `model_copy`, which skips it)
still cannot change what a rendered file means. Bare text that could end a string, a line or a word is refused
at render; TOML and YAML values keep their text as data; paths built from values stay under their root."""

from __future__ import annotations

import shlex
import tomllib

import pytest
import yaml

from kubefab.playbooks import escape, paths
from kubefab.playbooks.components import host_plans
from kubefab.playbooks.components.node import registry_hosts
from kubefab.playbooks.render import RenderError, render

HOSTILE = ['x"\nExecStartPre=/bin/evil', "a b", "x#y", "$(reboot)", "50%n", "a\\b", "x;y", "{{x}}"]


@pytest.mark.parametrize("value", HOSTILE)
def test_bare_text_that_needs_escaping_is_refused(render_example, value: str) -> None:
    rendered = render_example()
    crafted = rendered.cluster.model_copy(update={"name": value})
    with pytest.raises(RenderError, match="need escaping"):
        render("kube-apiserver/kube-apiserver.service.j2", cluster=crafted)


def test_plain_values_render_unchanged() -> None:
    assert escape.plain("https://10.0.0.1:2379,https://10.0.0.2:2379") == "https://10.0.0.1:2379,https://10.0.0.2:2379"
    assert escape.plain(6443) == 6443


def test_toml_values_stay_data(render_example) -> None:
    rendered = render_example()
    mirror = 'https://m.lan"\nskip_verify = true\n[host."https://evil"]'
    registry = rendered.cluster.registry.model_copy(update={"mirrors": {"docker.io": (mirror,)}})
    crafted = rendered.cluster.model_copy(update={"registry": registry})
    (hosts,) = [f for f in registry_hosts(crafted) if "docker.io" in f.path]
    parsed = tomllib.loads(hosts.content.decode())
    assert list(parsed["host"]) == [mirror] and "skip_verify" not in parsed


def test_yaml_and_shell_escaping_keep_the_text() -> None:
    for value in HOSTILE:
        assert yaml.safe_load(f"image: {escape.yaml(value)}") == {"image": value}
        assert shlex.split(f"echo {escape.sh(value)}") == ["echo", value]


def test_paths_from_values_stay_under_their_root(render_example) -> None:
    for name in ("..", "../../tmp/x", "a/b", "", "x\x00"):
        with pytest.raises(paths.PathEscape):
            paths.join("/etc/containerd/certs.d", name, "hosts.toml")
    rendered = render_example()
    registry = rendered.cluster.registry.model_copy(update={"mirrors": {"../../../../tmp/x": ("https://m.lan",)}})
    with pytest.raises(paths.PathEscape):
        registry_hosts(rendered.cluster.model_copy(update={"registry": registry}))


def test_every_rendered_value_passed_the_tripwire(render_example) -> None:
    """The example renders in full with the tripwire on: no template writes unescaped text of its own."""
    rendered = render_example()
    assert all(host_plans(rendered.inputs, h) for h in rendered.cluster.hosts)
