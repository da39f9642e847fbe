"""Security checks in the style of the CIS Kubernetes Benchmark, over the files kubefab plans for each host.
Pure: a host's planned files in, one result per check out; `fab audit` prints them for any inventory."""

from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from typing import Literal

import yaml

from kubefab.playbooks import escape, hardening, shapes
from kubefab.playbooks.components import ADDONS, host_plans, node
from kubefab.playbooks.components.addons import ADDONS_DIR, AddonError
from kubefab.playbooks.findings import Finding
from kubefab.playbooks.inputs import Inputs
from kubefab.playbooks.model import Host
from kubefab.playbooks.plan import File, Plan

Files = Mapping[str, File]

# Values found in tutorials and vendor examples that must never protect a real cluster.
DEFAULT_PASSWORDS = {"1111", "1234", "admin", "password", "secret", "changeme", "keepalived", "haproxy", "kubernetes"}
# The environment files kubefab writes, each holding its daemon's flags in one variable.
ENV_FILES = {
    "/etc/kubernetes/apiserver": "KUBE_API_ARGS",
    "/etc/kubernetes/controller-manager": "KUBE_CONTROLLER_MANAGER_ARGS",
    "/etc/kubernetes/scheduler": "KUBE_SCHEDULER_ARGS",
    "/etc/kubernetes/kubelet": "KUBELET_ARGS",
    "/etc/kubernetes/proxy": "KUBE_PROXY_ARGS",
}


def variables(text: str) -> dict[str, str]:
    """An environment file's variables, continuation lines joined and values unquoted as systemd reads them."""
    env: dict[str, str] = {}
    for line in text.replace("\\\n", " ").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            env[name.strip()] = " ".join(shlex.split(value))
    return env


def args_of(text: str, var: str) -> dict[str, str]:
    """The flags in an environment file's `VAR="--a=b \\ --c"` as {name: value} ('' for a bare flag)."""
    out: dict[str, str] = {}
    for word in variables(text).get(var, "").split():
        name, _, value = word.removeprefix("--").partition("=")
        out[name] = value
    return out


def _yaml(files: Files, path: str) -> dict:
    return yaml.safe_load(files[path].content) if path in files else {}


def _text(files: Files, path: str) -> str:
    return files[path].content.decode() if path in files else ""


def _flags(files: Files, path: str) -> dict[str, str] | None:
    """The flags of the environment file at `path` (one of ENV_FILES), None when the host has none."""
    return args_of(_text(files, path), ENV_FILES[path]) if path in files else None


def _apiserver(files: Files) -> dict[str, str] | None:
    return _flags(files, "/etc/kubernetes/apiserver")


# (True, detail) passes, (False, detail) fails, ("warn", detail) is a documented exception; None: the check does
# not apply to this host.
Result = tuple[bool | Literal["warn"], str]
Check = Callable[[Files, str], Result | None]
CONTAINERD = "/etc/containerd/config.toml"
CERTS_D = f"{node.CERTS_D}/"
COREDNS = f"{ADDONS_DIR}/20-coredns.yaml"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
SYSCTL = "/etc/sysctl.d/99-kubernetes.conf"


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


def files_0600(f: Files, role: str) -> tuple[bool, str] | None:
    loose = [f"{x.path} {x.mode:04o}" for x in f.values() if x.mode & 0o077]
    private = sum(credential(x.path) for x in f.values())
    detail = f"{len(f)} files ({private} keys and credentials), all 0600 (programs 0700)"
    return not loose, f"too open: {'; '.join(loose)}" if loose else detail


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


def _kubelet(f: Files) -> dict | None:
    return _yaml(f, KUBELET_CONFIG) if KUBELET_CONFIG in f else None


def _suites(found: list[str]) -> Result:
    weak = [s for s in found if s not in hardening.CIPHER_SUITES]
    if not found:
        return False, "no cipher suites set (Go's defaults include CBC suites)"
    return not weak, f"not allowed: {', '.join(weak)}" if weak else f"{len(found)} AEAD suites with forward secrecy"


def apiserver_cipher_suites(f: Files, role: str) -> Result | None:
    args = _apiserver(f)
    return None if args is None else _suites([s for s in args.get("tls-cipher-suites", "").split(",") if s])


def kubelet_cipher_suites(f: Files, role: str) -> Result | None:
    config = _kubelet(f)
    return None if config is None else _suites(list(config.get("tlsCipherSuites") or []))


def kubelet_hardening(f: Files, role: str) -> Result | None:
    config = _kubelet(f)
    if config is None:
        return None
    pairs = (line.partition("=") for line in _text(f, SYSCTL).splitlines())
    sysctl = {k.strip(): v.strip() for k, sep, v in pairs if sep}
    missing_kernel = [k for k, v in hardening.KUBELET_KERNEL.items() if sysctl.get(k) != v]
    problems = [
        *([] if (config.get("podPidsLimit") or 0) > 0 else [f"podPidsLimit: {config.get('podPidsLimit')}"]),
        *([] if config.get("seccompDefault") is True else [f"seccompDefault: {config.get('seccompDefault')}"]),
        *([] if config.get("protectKernelDefaults") is True else ["protectKernelDefaults off"]),
        *([f"{SYSCTL} lacks {', '.join(missing_kernel)}"] if missing_kernel else []),
    ]
    detail = f"podPidsLimit {config.get('podPidsLimit')}, seccompDefault, protectKernelDefaults with its sysctls"
    return not problems, "; ".join(problems) if problems else detail


def kubelet_certificate_rotation(f: Files, role: str) -> Result | None:
    config = _kubelet(f)
    if config is None:
        return None
    if config.get("rotateCertificates") is True:
        return True, "rotateCertificates: true"
    return "warn", (
        "rotateCertificates off: kubefab issues and renews kubelet certificates from the operator's machine "
        "(kubefab pki + deploy), so no CSR is signed on a node's request (documented exception)"
    )


def admission_plugins(f: Files, role: str) -> Result | None:
    args = _apiserver(f)
    if args is None:
        return None
    plugins = set(args.get("enable-admission-plugins", "").split(","))
    missing = [p for p in hardening.ADMISSION_PLUGINS if p not in plugins]
    config = args.get("admission-control-config-file", "")
    configured = [p.get("name") for p in (_yaml(f, config).get("plugins") or [])] if config in f else []
    if "EventRateLimit" in plugins and "EventRateLimit" not in configured:
        missing.append("EventRateLimit's configuration (--admission-control-config-file)")
    if missing:
        return False, f"missing: {', '.join(missing)}"
    if "AlwaysPullImages" not in plugins:
        return "warn", (
            f"{', '.join(hardening.ADMISSION_PLUGINS)}; AlwaysPullImages off (api.always_pull_images): images "
            "imported from the bundle are not in any registry (documented exception)"
        )
    return True, ", ".join(sorted(plugins))


def service_account_tokens(f: Files, role: str) -> Result | None:
    args = _apiserver(f)
    if args is None:
        return None
    value = args.get("service-account-extend-token-expiration", "(default true)")
    return value == "false", f"--service-account-extend-token-expiration={value}"


def terminated_pod_gc(f: Files, role: str) -> Result | None:
    flags = _flags(f, "/etc/kubernetes/controller-manager")
    if flags is None:
        return None
    threshold = flags.get("terminated-pod-gc-threshold", "")
    return threshold.isdigit() and int(threshold) > 0, f"--terminated-pod-gc-threshold={threshold or '(unset)'}"


def static_tokens(f: Files, role: str) -> Result | None:
    args = _apiserver(f)
    if args is None or "token-auth-file" not in args:
        return None
    path = args["token-auth-file"]
    token = f.get(path)
    if token is None or token.mode & 0o077 or not token.secret:
        return False, f"{path}: not deployed as a 0600 secret file"
    users = [line.split(",")[1] for line in token.content.decode().splitlines() if line.count(",") >= 2]
    return "warn", (
        f"static bearer tokens for {', '.join(users)}: a weaker mechanism than certificates (never expire, "
        "revoked only by a restart); kept because the inventory asks for it (api.token_users)"
    )


def env_files_plain(f: Files, role: str) -> Result | None:
    """Each environment file holds its one variable, as `--flag[=value]` words of plain text: a value that
    carried a newline, a quote or a space would show here as a second variable or a stray word."""
    present = {p: v for p, v in ENV_FILES.items() if p in f}
    if not present:
        return None
    bad = []
    for path, var in present.items():
        env = variables(_text(f, path))
        if list(env) != [var]:
            bad.append(f"{path}: variables {list(env)}")
            continue
        # systemd splits `$VAR` on whitespace after unquoting: every word must be a flag.
        for word in env[var].split():
            if not (word.startswith("--") and escape.PLAIN.fullmatch(word)):
                bad.append(f"{path}: {word[:60]!r}")
    return not bad, "; ".join(bad) if bad else f"{len(present)} files, one variable of plain flags each"


def containerd_config(f: Files, role: str) -> Result | None:
    """containerd runs every container through runc at its installed path, and pulls over verified TLS."""
    if CONTAINERD not in f:
        return None
    try:
        config = tomllib.loads(_text(f, CONTAINERD))
    except tomllib.TOMLDecodeError as exc:
        return False, f"{CONTAINERD}: not TOML ({exc})"
    plugins = config.get("plugins", {})
    runtimes = plugins.get("io.containerd.cri.v1.runtime", {}).get("containerd", {}).get("runtimes", {})
    binaries = {name: r.get("options", {}).get("BinaryName") for name, r in runtimes.items()}
    sandbox = plugins.get("io.containerd.cri.v1.images", {}).get("pinned_images", {}).get("sandbox", "")
    bad = [] if binaries == {"runc": "/usr/local/sbin/runc"} else [f"runtimes {binaries}"]
    if not re.fullmatch(shapes.IMAGE, sandbox, re.ASCII):
        bad.append(f"sandbox image {sandbox[:60]!r}")
    for path in (p for p in f if p.startswith(CERTS_D)):
        bad += _registry_hosts(path, _text(f, path))
    return not bad, "; ".join(bad) if bad else "one runtime (runc); registries verified over TLS"


def _registry_hosts(path: str, text: str) -> list[str]:
    name, _, rest = path.removeprefix(CERTS_D).partition("/")
    if rest != "hosts.toml" or not re.fullmatch(shapes.MIRROR_KEY, name, re.ASCII):
        return [f"{path}: not <registry>/hosts.toml"]
    try:
        hosts = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: not TOML ({exc})"]
    bad = [f"{path}: skip_verify" for h in [hosts, *hosts.get("host", {}).values()] if h.get("skip_verify")]
    bad += [f"{path}: {key}" for key in hosts if key not in ("server", "ca", "host")]
    for url, h in hosts.get("host", {}).items():
        if not re.fullmatch(shapes.MIRROR_URL, url, re.ASCII) or set(h) - {"capabilities", "ca"}:
            bad.append(f"{path}: mirror {url[:60]!r} {sorted(h)}")
    return bad


def coredns_manifest(f: Files, role: str) -> Result | None:
    """The DNS add-on as kubefab writes it: its images by reference, no privilege, no command of its own."""
    if COREDNS not in f:
        return None
    try:
        docs = [d for d in yaml.safe_load_all(_text(f, COREDNS)) if d]
    except yaml.YAMLError as exc:
        return False, f"not YAML ({exc})"
    kinds = sorted(d.get("kind", "?") for d in docs)
    bad = [] if kinds == COREDNS_KINDS else [f"objects {kinds}"]
    for d in docs:
        spec = d.get("spec", {}).get("template", {}).get("spec", {}) if d.get("kind") == "Deployment" else {}
        bad += [f"pod {key}" for key in ("hostPID", "hostNetwork", "hostIPC") if spec.get(key)]
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            context = c.get("securityContext") or {}
            if context.get("privileged") or context.get("allowPrivilegeEscalation") is not False:
                bad.append(f"container {c.get('name')}: privileged or escalation allowed")
            if "command" in c or not re.fullmatch(shapes.IMAGE, str(c.get("image", "")), re.ASCII):
                bad.append(f"container {c.get('name')}: command or image {str(c.get('image'))[:60]!r}")
    return not bad, "; ".join(bad) if bad else "CoreDNS unprivileged, its image by reference"


COREDNS_KINDS = sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"])


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
    "file-modes": ("every installed file 0600 (programs 0700)", files_0600),
    "ca-key-placement": ("CA key absent from hosts without control_plane", ca_key_only_on_control_plane),
    "default-passwords": ("no default passwords (VRRP, HAProxy stats)", no_default_passwords),
    "apiserver-cipher-suites": ("apiserver TLS cipher suites: AEAD with forward secrecy", apiserver_cipher_suites),
    "kubelet-cipher-suites": ("kubelet TLS cipher suites: AEAD with forward secrecy", kubelet_cipher_suites),
    "kubelet-hardening": ("kubelet podPidsLimit, seccompDefault, protectKernelDefaults", kubelet_hardening),
    "kubelet-certificate-rotation": ("kubelet certificate rotation", kubelet_certificate_rotation),
    "admission-plugins": ("admission: NodeRestriction, EventRateLimit, DenyServiceExternalIPs", admission_plugins),
    "service-account-tokens": ("service account tokens not extended", service_account_tokens),
    "terminated-pod-gc": ("controller-manager terminated-pod GC threshold", terminated_pod_gc),
    "static-tokens": ("static token file (opt-in)", static_tokens),
    "env-files": ("environment files: one variable of plain flags", env_files_plain),
    "containerd-config": ("containerd: runc only, registries verified", containerd_config),
    "coredns-manifest": ("CoreDNS manifest: unprivileged, images by reference", coredns_manifest),
}


def plans_for(inputs: Inputs, host: Host) -> list[Plan]:
    """What a deploy installs on `host`, the add-on manifests included (those kubefab writes itself when the
    bundle holds no CNI manifest yet)."""
    plans = host_plans(inputs, host)
    if not ADDONS.on(inputs.cluster, host):
        return plans
    try:
        return [*plans, ADDONS.plan(inputs, host)]
    except AddonError:
        own = tuple(a for a in inputs.cluster.addons if a != "cni")
        inputs = dataclasses.replace(inputs, cluster=inputs.cluster.model_copy(update={"addons": own}))
        return [*plans, ADDONS.plan(inputs, host)]


def audit_host(host: str, control_plane: bool, plans: list[Plan]) -> list[Finding]:
    files = {f.path: f for p in plans for f in p.files}
    role = "control_plane" if control_plane else "other"
    out = []
    for check_id, (title, check) in CHECKS.items():
        verdict = check(files, role)
        if verdict is not None:
            ok, detail = verdict
            status = "warn" if ok == "warn" else "ok" if ok else "fail"
            out.append(Finding(host, f"{check_id}: {title}", status, detail))
    return out
