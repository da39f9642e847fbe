"""Security checks in the style of the CIS Kubernetes Benchmark, over the files kubefab plans for each host.
Pure: a host's planned files in, one result per check out; `fab audit` prints them for any inventory."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping

import yaml

from playbooks.findings import Finding
from playbooks.plan import File, Plan

Files = Mapping[str, File]

# Values found in tutorials and vendor examples that must never protect a real cluster.
DEFAULT_PASSWORDS = {"1111", "1234", "admin", "password", "secret", "changeme", "keepalived", "haproxy", "kubernetes"}


def args_of(text: str, var: str) -> dict[str, str]:
    """The flags in an environment file's `VAR="--a=b \\ --c"` as {name: value} ('' for a bare flag)."""
    env: dict[str, str] = {}
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            env[name.strip()] = " ".join(shlex.split(value))
    out: dict[str, str] = {}
    for word in env.get(var, "").split():
        name, _, value = word.removeprefix("--").partition("=")
        out[name] = value
    return out


def _yaml(files: Files, path: str) -> dict:
    return yaml.safe_load(files[path].content) if path in files else {}


def _text(files: Files, path: str) -> str:
    return files[path].content.decode() if path in files else ""


def _apiserver(files: Files) -> dict[str, str] | None:
    if "/etc/kubernetes/apiserver" not in files:
        return None
    return args_of(_text(files, "/etc/kubernetes/apiserver"), "KUBE_API_ARGS")


Check = Callable[[Files, str], tuple[bool, str] | None]  # None: the check does not apply to this host


def kubelet_anonymous_auth_off(f: Files, role: str) -> tuple[bool, str] | None:
    if "/var/lib/kubelet/config.yaml" not in f:
        return None
    enabled = _yaml(f, "/var/lib/kubelet/config.yaml").get("authentication", {}).get("anonymous", {}).get("enabled")
    return enabled is False, f"authentication.anonymous.enabled: {enabled}"


def kubelet_authorization_webhook(f: Files, role: str) -> tuple[bool, str] | None:
    if "/var/lib/kubelet/config.yaml" not in f:
        return None
    config = _yaml(f, "/var/lib/kubelet/config.yaml")
    mode = config.get("authorization", {}).get("mode")
    x509 = config.get("authentication", {}).get("x509", {}).get("clientCAFile")
    return mode == "Webhook" and bool(x509), f"authorization.mode: {mode}; x509.clientCAFile: {x509}"


def kubelet_read_only_port_off(f: Files, role: str) -> tuple[bool, str] | None:
    if "/var/lib/kubelet/config.yaml" not in f:
        return None
    port = _yaml(f, "/var/lib/kubelet/config.yaml").get("readOnlyPort")
    return port == 0, f"readOnlyPort: {port}"


def apiserver_authorization(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    modes = args.get("authorization-mode", "").split(",")
    return "AlwaysAllow" not in modes and {"Node", "RBAC"} <= set(modes), f"--authorization-mode={','.join(modes)}"


def apiserver_anonymous_auth_off(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    return args.get("anonymous-auth") == "false", f"--anonymous-auth={args.get('anonymous-auth', '(default true)')}"


def apiserver_no_insecure_port(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    bad = [a for a in ("insecure-port", "insecure-bind-address") if a in args]
    return not bad, f"found --{', --'.join(bad)}" if bad else "no insecure serving flags"


def apiserver_admission_node_restriction(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    plugins = args.get("enable-admission-plugins", "").split(",")
    return "NodeRestriction" in plugins, f"--enable-admission-plugins={','.join(plugins)}"


def apiserver_kubelet_verified(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    ca = args.get("kubelet-certificate-authority")
    return bool(ca), f"--kubelet-certificate-authority={ca}"


def profiling_off(f: Files, role: str) -> tuple[bool, str] | None:
    if "/etc/kubernetes/apiserver" not in f:
        return None
    api = args_of(_text(f, "/etc/kubernetes/apiserver"), "KUBE_API_ARGS").get("profiling")
    cm = args_of(_text(f, "/etc/kubernetes/controller-manager"), "KUBE_CONTROLLER_MANAGER_ARGS").get("profiling")
    sched = _yaml(f, "/etc/kubernetes/kube-scheduler.yaml").get("enableProfiling")
    ok = api == "false" and cm == "false" and sched is False
    return ok, f"apiserver --profiling={api}; controller-manager --profiling={cm}; scheduler enableProfiling: {sched}"


def encryption_at_rest(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    path = args.get("encryption-provider-config")
    if not path or path not in f:
        return False, "no --encryption-provider-config (or the file is not deployed)"
    providers = [
        p
        for r in _yaml(f, path).get("resources", [])
        if "secrets" in r.get("resources", [])
        for p in r.get("providers", [])
    ]
    first = next(iter(providers[0]), "none") if providers else "none"
    return first in ("secretbox", "aescbc", "aesgcm", "kms"), f"Secrets written with: {first}"


def audit_log(f: Files, role: str) -> tuple[bool, str] | None:
    args = _apiserver(f)
    if args is None:
        return None
    needed = ("audit-policy-file", "audit-log-path", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize")
    missing = [n for n in needed if not args.get(n)]
    policy = args.get("audit-policy-file", "")
    if policy and policy not in f:
        missing.append(f"{policy} (not deployed)")
    return not missing, "missing: --" + ", --".join(missing) if missing else f"log {args['audit-log-path']}, rotated"


def etcd_client_cert_auth(f: Files, role: str) -> tuple[bool, str] | None:
    if "/etc/etcd/etcd.conf" not in f:
        return None
    env = dict(
        line.split("=", 1)
        for line in _text(f, "/etc/etcd/etcd.conf").splitlines()
        if "=" in line and not line.startswith("#")
    )
    urls = [u for k in ("ETCD_LISTEN_CLIENT_URLS", "ETCD_LISTEN_PEER_URLS") for u in env.get(k, "").split(",")]
    ok = (
        env.get("ETCD_CLIENT_CERT_AUTH") == "true"
        and env.get("ETCD_PEER_CLIENT_CERT_AUTH") == "true"
        and all(u.startswith("https://") for u in urls)
    )
    return ok, (
        f"client-cert-auth={env.get('ETCD_CLIENT_CERT_AUTH')}, "
        f"peer-client-cert-auth={env.get('ETCD_PEER_CLIENT_CERT_AUTH')}, urls: {', '.join(urls)}"
    )


def credential(path: str) -> bool:
    """Private keys, PEM bundles with keys, kubeconfigs (embedded keys) and the encryption key."""
    return path.endswith((".key", ".pem", "/encryption-config.yaml")) or (
        path.startswith("/etc/kubernetes/") and path.endswith(".conf")
    )


def private_files_0600(f: Files, role: str) -> tuple[bool, str] | None:
    private = [x for x in f.values() if credential(x.path)]
    loose = [f"{x.path} {x.mode:04o}" for x in private if x.mode & 0o077]
    return not loose, f"too open: {'; '.join(loose)}" if loose else f"{len(private)} key/credential files, all 0600"


def ca_key_only_on_control_plane(f: Files, role: str) -> tuple[bool, str] | None:
    has_key = "/etc/kubernetes/pki/ca.key" in f
    if role == "control_plane":
        return None
    return not has_key, "CA key present on a host without the control_plane role" if has_key else "no CA key"


def no_default_passwords(f: Files, role: str) -> tuple[bool, str] | None:
    found = []
    for line in _text(f, "/etc/keepalived/keepalived.conf").splitlines():
        if line.strip().startswith("auth_pass"):
            found.append(("VRRP auth_pass", line.split()[-1]))
    for line in _text(f, "/etc/haproxy/haproxy.cfg").splitlines():
        if line.strip().startswith("stats auth"):
            found.append(("HAProxy stats", line.split()[-1].split(":", 1)[-1]))
    if not found:
        return None
    weak = [what for what, value in found if value.lower() in DEFAULT_PASSWORDS or len(value) < 8]
    return not weak, f"weak or default: {', '.join(weak)}" if weak else f"{len(found)} generated passwords"


CHECKS: dict[str, tuple[str, Check]] = {
    "kubelet-anonymous-auth": ("kubelet anonymous authentication off", kubelet_anonymous_auth_off),
    "kubelet-authorization": ("kubelet authorization Webhook, client CA set", kubelet_authorization_webhook),
    "kubelet-read-only-port": ("kubelet read-only port disabled", kubelet_read_only_port_off),
    "apiserver-authorization": ("apiserver authorization Node,RBAC (not AlwaysAllow)", apiserver_authorization),
    "apiserver-anonymous-auth": ("apiserver anonymous authentication off", apiserver_anonymous_auth_off),
    "apiserver-insecure-port": ("no insecure apiserver port", apiserver_no_insecure_port),
    "apiserver-node-restriction": ("NodeRestriction admission plugin", apiserver_admission_node_restriction),
    "apiserver-kubelet-ca": ("apiserver verifies kubelet certificates", apiserver_kubelet_verified),
    "profiling": ("profiling off (apiserver, controller-manager, scheduler)", profiling_off),
    "encryption-at-rest": ("Secrets encrypted at rest", encryption_at_rest),
    "audit-log": ("audit log on, with rotation", audit_log),
    "etcd-client-cert-auth": ("etcd mutual TLS on client and peer URLs", etcd_client_cert_auth),
    "key-file-modes": ("key and credential files 0600", private_files_0600),
    "ca-key-placement": ("CA key absent from hosts without control_plane", ca_key_only_on_control_plane),
    "default-passwords": ("no default passwords (VRRP, HAProxy stats)", no_default_passwords),
}


def audit_host(host: str, control_plane: bool, plans: list[Plan]) -> list[Finding]:
    files = {f.path: f for p in plans for f in p.files}
    role = "control_plane" if control_plane else "other"
    out = []
    for check_id, (title, check) in CHECKS.items():
        verdict = check(files, role)
        if verdict is not None:
            ok, detail = verdict
            out.append(Finding(host, f"{check_id}: {title}", "ok" if ok else "fail", detail))
    return out
