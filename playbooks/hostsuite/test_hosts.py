"""What a kubefab deploy leaves on every host, checked with testinfra on the host itself: services enabled
and running, ports listening, files and their modes, certificates valid and chaining to their CA."""

from __future__ import annotations

import pytest
import yaml

from kubefab.pki.profiles import ETCD_PKI
from kubefab.playbooks import bundle, components, dns, hardening
from kubefab.playbooks.apply import local_sha256
from kubefab.playbooks.components import etcd, host_os
from kubefab.playbooks.components.images import CTR
from kubefab.playbooks.hostsuite.nodes import Node, needs
from kubefab.playbooks.inputs import stack_of

PKI = "/etc/kubernetes/pki"
DAEMONS = [comp for comp in components.DAEMONS if comp.services]


@pytest.mark.parametrize("component", DAEMONS, ids=[comp.name for comp in DAEMONS])
def test_services_enabled_and_running(host, node: Node, component) -> None:
    if not component.on(node.cluster, node.host):
        pytest.skip(f"{node.host.name} does not run {component.name}")
    for name in component.services:
        service = host.service(name)
        assert service.is_enabled, f"{name} is not enabled"
        assert service.is_running, f"{name} is not running"


def test_ports_listening(host, node: Node) -> None:
    """Every TCP port the host's components declare, on the addresses they bind."""
    c = node.cluster
    ports = [
        f"tcp://{address}:{p.number}"
        for comp in components.DAEMONS
        if comp.on(c, node.host)
        for p in comp.ports(c)
        if p.protocol == "tcp"
        for address in p.addresses(node.host)
    ]
    assert ports, "no ports declared for this host's components"
    closed = [p for p in ports if not host.socket(p).is_listening]
    assert not closed, f"not listening: {closed}"


def test_kernel_settings_and_swap(host, node: Node) -> None:
    wanted = host_os.NETWORK_SYSCTLS | (hardening.KUBELET_KERNEL if node.has("worker") else {})
    for key, value in wanted.items():
        assert str(host.sysctl(key)) == value, key
    assert host.run("awk 'NR > 1' /proc/swaps").stdout.strip() == "", "swap is on"
    hosts_file = host.file("/etc/hosts").content_string
    for h in node.cluster.hosts:
        assert f"{h.address} {h.name}" in hosts_file


# Everything kubefab writes lives here (and in its own units): configuration, units and credentials alike are
# 0600, its one script 0700 (CIS 1.1, 4.1).
OWN_FILES = (
    "/etc/kubernetes",
    "/etc/etcd",
    "/etc/containerd",
    "/etc/crictl.yaml",
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kube-proxy/config.yaml",
    "/etc/sysctl.d/99-kubernetes.conf",
    "/etc/modules-load.d/kubernetes.conf",
)
LB_FILES = (
    "/etc/haproxy/haproxy.cfg",
    "/etc/systemd/system/haproxy.service.d",
    "/etc/keepalived/keepalived.conf",
    "/etc/keepalived/check_haproxy.sh",
)


def test_every_file_kubefab_writes_is_0600(host, node: Node) -> None:
    units = " ".join(f"/etc/systemd/system/{s}.service" for comp in DAEMONS for s in comp.services)
    paths = " ".join(OWN_FILES + (LB_FILES if node.has("lb") else ()))
    # One round trip: every file with its mode.
    found = dict(
        line.split(" ", 1)[::-1]
        for line in host.run(f"find {paths} {units} -type f -printf '%m %p\\n' 2>/dev/null").stdout.splitlines()
    )
    assert f"{PKI}/ca.crt" in found, "no PKI found"
    loose = [f"{p} {mode}" for p, mode in found.items() if int(mode, 8) & 0o077]
    assert not loose, f"readable by others: {loose}"


def test_kubernetes_pki_is_roots(host, node: Node) -> None:
    """Everything under /etc/kubernetes/pki is root:root (CIS 1.1.19); etcd's own files are in its directory."""
    owners = host.run(f"find {PKI} -printf '%u:%g %p\\n'").stdout.splitlines()
    assert owners and not [o for o in owners if not o.startswith("root:root ")], owners


def test_ca_key_only_on_control_plane(host, node: Node) -> None:
    assert host.file(f"{PKI}/ca.key").exists == node.has("control_plane")
    assert not host.file(f"{PKI}/etcd/ca.key").exists
    assert not host.file(f"{PKI}/front-proxy-ca.key").exists


def _verify(host, cert: str, ca: str) -> None:
    result = host.run(f"openssl verify -CAfile {ca} {cert}")
    assert result.rc == 0, result.stdout + result.stderr
    assert host.run(f"openssl x509 -checkend 86400 -noout -in {cert}").rc == 0, f"{cert} expires within a day"


def test_etcd_member(host, node: Node) -> None:
    needs(node, "etcd")
    data = host.file("/var/lib/etcd")
    assert data.is_directory and data.user == "etcd" and data.mode == 0o700
    own = host.file(ETCD_PKI)
    assert own.is_directory and own.user == "etcd" and own.mode == 0o700
    for name in ("server", "peer"):
        _verify(host, f"{ETCD_PKI}/{name}.crt", f"{ETCD_PKI}/ca.crt")
        assert host.file(f"{ETCD_PKI}/{name}.key").user == "etcd"
    health = host.run(
        f"ETCDCTL_API=3 etcdctl --endpoints=https://{node.host.address}:2379 "
        f"--cacert={PKI}/etcd/ca.crt --cert={PKI}/etcd/healthcheck-client.crt "
        f"--key={PKI}/etcd/healthcheck-client.key endpoint health"
    )
    assert health.rc == 0 and "is healthy" in health.stdout + health.stderr, health.stderr


def test_etcd_membership(host, node: Node) -> None:
    """etcd's member list is the inventory's etcd hosts, every one a started voter: no learner left unpromoted
    (its join file gone), no member the inventory does not name."""
    needs(node, "etcd")
    assert not host.file(etcd.JOIN_ENV).exists, f"{etcd.JOIN_ENV} left: this member's promotion did not finish"
    every = ",".join(etcd.endpoint(h) for h in node.cluster.etcd_hosts)
    listed = host.run(etcd.etcdctl(every, "member list"))
    assert listed.rc == 0, listed.stderr
    rows = etcd.member_rows(listed.stdout)
    assert sorted(r[2] for r in rows) == sorted(h.name for h in node.cluster.etcd_hosts), listed.stdout
    assert all(r[1] == "started" and r[5] == "false" for r in rows), f"a learner or unstarted member:\n{listed.stdout}"


def test_etcd_snapshots(host, node: Node) -> None:
    """With etcd.snapshots: the timer scheduled, its last run (if any) not failed, the kept snapshots private and
    matching their .sha256; without: no timer left behind."""
    needs(node, "etcd")
    timer = host.service(etcd.SNAPSHOT_TIMER)
    if node.cluster.etcd.snapshots is None:
        left = host.file(f"/etc/systemd/system/{etcd.SNAPSHOT_TIMER}").exists
        assert not left, "a snapshot timer etcd.snapshots no longer asks for"
        return
    assert timer.is_enabled and timer.is_running, f"{etcd.SNAPSHOT_TIMER} is not enabled and active"
    result = host.run(f"systemctl show -p Result --value {etcd.SNAPSHOT_UNIT}.service").stdout.strip()
    assert result == "success", f"the last snapshot run ended with {result} (journalctl -u {etcd.SNAPSHOT_UNIT})"
    listed = host.run(f"find {etcd.SNAPSHOT_DIR} -maxdepth 1 -name 'etcd-*.db' -printf '%m %f\\n'").stdout.split("\n")
    snapshots = [line.split() for line in listed if line]
    assert len(snapshots) <= node.cluster.etcd.snapshots.keep, f"more than keep={node.cluster.etcd.snapshots.keep}"
    for mode, name in snapshots:
        assert mode == "600", f"{name} is {mode}"
        check = host.run(f"cd {etcd.SNAPSHOT_DIR} && sha256sum -c {name}.sha256")
        assert check.rc == 0, check.stdout + check.stderr


def test_control_plane(host, node: Node) -> None:
    needs(node, "control_plane")
    _verify(host, f"{PKI}/apiserver.crt", f"{PKI}/ca.crt")
    sans = host.run(f"openssl x509 -noout -ext subjectAltName -in {PKI}/apiserver.crt").stdout
    assert f"IP Address:{node.host.address}" in sans
    if node.cluster.api.vip is not None:
        assert f"IP Address:{node.cluster.api.vip}" in sans
    readyz = host.run(
        f"kubectl --kubeconfig=/etc/kubernetes/admin.conf "
        f"--server=https://127.0.0.1:{node.cluster.api.apiserver_port} get --raw /readyz"
    )
    assert readyz.rc == 0 and readyz.stdout.strip() == "ok", readyz.stderr


def test_signing_ca_is_the_key_of_the_first_trusted_ca(host, node: Node) -> None:
    """The controller-manager's signer reads one certificate, which must be its key's and the CA every host trusts
    first; ca.crt holds a second CA only while `kubefab certs.rotate-ca` runs."""
    needs(node, "control_plane")
    signing = host.file(f"{PKI}/ca-signing.crt").content_string
    trusted = host.file(f"{PKI}/ca.crt").content_string
    assert signing.count("BEGIN CERTIFICATE") == 1, "ca-signing.crt must hold one certificate"
    assert trusted.startswith(signing.strip()), "ca.crt does not start with the signing CA"
    assert trusted.count("BEGIN CERTIFICATE") <= 2, "ca.crt holds more than the two CAs of a rotation"
    der = "openssl pkey -pubin -outform DER | sha256sum"
    public = [
        host.run(f"openssl x509 -noout -pubkey -in {PKI}/ca-signing.crt | {der}"),
        host.run(f"openssl pkey -pubout -in {PKI}/ca.key | {der}"),
    ]
    assert all(r.rc == 0 for r in public) and public[0].stdout == public[1].stdout, "ca.key is not ca-signing.crt's"
    assert host.file("/etc/kubernetes/encryption-config.yaml").mode == 0o600


def test_load_balancer(host, node: Node) -> None:
    needs(node, "lb")
    assert host.file("/etc/keepalived/keepalived.conf").mode == 0o600
    assert host.file("/etc/keepalived/check_haproxy.sh").mode == 0o700
    assert host.run("/etc/keepalived/check_haproxy.sh").rc == 0, "HAProxy does not accept on the API port"
    # A VIP handoff's rule left behind (node.remove interrupted past repair) would drop every new connection
    # while this host holds the VIP.
    rules = host.run("iptables -S INPUT")
    assert "kubefab-vip-handoff" not in rules.stdout, "a rule holding back new connections to the VIP is left"


def test_node(host, node: Node) -> None:
    needs(node, "worker")
    _verify(host, f"{PKI}/kubelet-server.crt", f"{PKI}/ca.crt")
    config = host.file("/var/lib/kubelet/config.yaml").content_string
    assert "anonymous:\n    enabled: false" in config
    healthz = host.run(
        "timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/10248 && "
        'printf "GET /healthz HTTP/1.0\\r\\n\\r\\n" >&3 && head -1 <&3\''
    )
    assert " 200 " in healthz.stdout, healthz.stdout + healthz.stderr


def test_binaries_match_the_bundle(host, node: Node) -> None:
    """Every binary the host's roles run is hashed in full and compared with the bundle it came from (deploy
    itself skips the hash of a binary unchanged since it installed it; this check never does)."""
    manifest = bundle.read_manifest(node.cluster.bundle_dir)
    if manifest is None:
        pytest.skip(f"no bundle at {node.cluster.bundle_dir} on this machine: binaries not compared")
    wanted = {
        b.path: local_sha256(bundle.extracted(node.cluster.bundle_dir, b))
        for b in components.binaries_on(node.cluster, stack_of(node.cluster), manifest.arch, node.host)
    }
    out = host.run("sha256sum " + " ".join(wanted))
    found = {path: sha for sha, path in (line.split(maxsplit=1) for line in out.stdout.splitlines())}
    differ = [p for p, sha in wanted.items() if found.get(p) != sha]
    assert not differ, f"not the bundle's (missing or changed): {', '.join(differ)}"


# What each installed program prints for its version, given the pinned stack (upstream's own wording).
VERSION_OUTPUT = {
    "kube-apiserver": ("--version", "Kubernetes v{kubernetes}"),
    "kubelet": ("--version", "Kubernetes v{kubernetes}"),
    "kube-proxy": ("--version", "Kubernetes v{kubernetes}"),
    "etcd": ("--version", "etcd Version: {etcd}"),
    "containerd": ("--version", " v{containerd} "),
    "runc": ("--version", "runc version {runc}"),
    "crictl": ("--version", "crictl version v{crictl}"),
}


def test_programs_are_the_pinned_releases(host, node: Node) -> None:
    """Each program reports the version the inventory pins: catches a binary from another release or a build
    without its version stamp."""
    s = stack_of(node.cluster)
    names = {b.path.rsplit("/", 1)[1]: b.path for b in components.binaries_on(node.cluster, s, "amd64", node.host)}
    checked = 0
    for name, (flag, expected) in VERSION_OUTPUT.items():
        if name in names:
            out = host.run(f"{names[name]} {flag}")
            assert expected.format(**vars(s)) in out.stdout + " ", f"{name}: {out.stdout.strip()} {out.stderr}"
            checked += 1
    assert checked, "no program checked"


def test_every_worker_is_registered_at_the_pinned_version(host, node: Node) -> None:
    needs(node, "control_plane")
    out = host.run(
        f"kubectl --kubeconfig=/etc/kubernetes/admin.conf --server=https://127.0.0.1:"
        f"{node.cluster.api.apiserver_port} get nodes -o "
        "jsonpath='{range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion} {end}'"
    )
    assert out.rc == 0, out.stderr
    registered = dict(pair.split("=") for pair in out.stdout.split())
    kubernetes = stack_of(node.cluster).kubernetes
    assert registered == {w.name: f"v{kubernetes}" for w in node.cluster.workers}


def test_images_held_by_containerd(host, node: Node) -> None:
    """Without a private registry every image the cluster runs is in containerd, as the bundle has it."""
    needs(node, "worker")
    c = node.cluster
    if c.registry.url:
        pytest.skip("images are pulled from registry.url, not imported")
    manifest = bundle.read_manifest(c.bundle_dir)
    arch = manifest.arch if manifest else "amd64"
    listed = host.run(f"{CTR} images ls").stdout.splitlines()[1:]
    held = {fields[0]: fields[2] for fields in (line.split() for line in listed) if len(fields) > 2}
    for ref in bundle.required_images(c, stack_of(c)):
        assert ref in held, f"{ref} is not in containerd"
        entry = manifest.files.get(bundle.image_path(ref, arch)) if manifest else None
        if entry is not None:
            assert held[ref] == entry.digest, f"{ref}: containerd holds {held[ref]}, the bundle {entry.digest}"


def test_registry_mirrors(host, node: Node) -> None:
    needs(node, "worker")
    c = node.cluster
    for upstream, mirrors in c.registry.all_mirrors().items():
        toml = host.file(f"/etc/containerd/certs.d/{upstream}/hosts.toml")
        assert toml.exists, f"no hosts.toml for {upstream}"
        for mirror in mirrors:
            assert f'[host."{mirror}"]' in toml.content_string, f"{upstream}: {mirror} is not a mirror"


def test_cni_configured_on_the_node(host, node: Node) -> None:
    needs(node, "worker")
    if "cni" not in node.cluster.addons:
        pytest.skip("the inventory brings its own CNI")
    conf = host.run("ls /etc/cni/net.d").stdout.split()
    if node.cluster.cni == "flannel":
        assert "10-flannel.conflist" in conf, conf
        assert host.file("/run/flannel/subnet.env").contains("FLANNEL_SUBNET="), "flanneld has no lease here"
    else:
        assert any("calico" in f for f in conf), conf


def test_cluster_dns_answers(host, node: Node) -> None:
    """The cluster DNS Service answers for the `kubernetes` Service, through kube-proxy's rules on this host."""
    needs(node, "worker")
    c = node.cluster
    if "coredns" not in c.addons:
        pytest.skip("the inventory brings its own DNS")
    out = host.run(dns.query_command(f"kubernetes.default.svc.{c.network.domain}", str(c.network.dns_ip)))
    assert out.rc == 0 and out.stdout.split() == [str(c.network.kubernetes_service_ip)], out.stdout + out.stderr


def _running_flags(host, service: str) -> dict[str, str]:
    pid = host.run(f"systemctl show -p MainPID --value {service}").stdout.strip()
    assert pid not in ("", "0"), f"{service} is not running"
    words = host.file(f"/proc/{pid}/cmdline").content.split(b"\0")
    return dict(w.decode().removeprefix("--").partition("=")[::2] for w in words if w.startswith(b"--"))


def test_running_apiserver_is_hardened(host, node: Node) -> None:
    """The flags of the running process (not only the file): what kube-bench reads too."""
    needs(node, "control_plane")
    flags = _running_flags(host, "kube-apiserver")
    assert flags["tls-cipher-suites"].split(",") == list(hardening.CIPHER_SUITES)
    assert set(hardening.ADMISSION_PLUGINS) <= set(flags["enable-admission-plugins"].split(","))
    assert host.file(flags["admission-control-config-file"]).contains("EventRateLimit")
    assert flags["service-account-extend-token-expiration"] == "false"
    assert flags["anonymous-auth"] == "false" and flags["profiling"] == "false"
    gc = _running_flags(host, "kube-controller-manager")["terminated-pod-gc-threshold"]
    assert int(gc) == hardening.TERMINATED_POD_GC_THRESHOLD


def test_running_kubelet_is_hardened(host, node: Node) -> None:
    """kubelet runs from the hardened file; that it runs at all shows protectKernelDefaults found the kernel
    settings it requires (it refuses to start otherwise)."""
    needs(node, "worker")
    assert host.service("kubelet").is_running
    config = yaml.safe_load(host.file("/var/lib/kubelet/config.yaml").content_string)
    assert config["protectKernelDefaults"] is True and config["seccompDefault"] is True
    assert config["podPidsLimit"] == hardening.POD_PIDS_LIMIT
    assert config["tlsCipherSuites"] == list(hardening.CIPHER_SUITES)
