"""What the CIS Kubernetes Benchmark asks of the cluster's settings, named once: the templates write these
values and `kubefab audit` checks the rendered files against them."""

from __future__ import annotations

# TLS 1.2 suites with forward secrecy and AEAD, for ECDSA and RSA certificates (TLS 1.3 suites are fixed by
# Go and not configurable). The apiserver and the kubelets accept only these (CIS 1.2.29, 4.2.12 of cis-1.12).
# CHACHA20 is spelled as kube-bench's list has it; Kubernetes takes it and the _SHA256 name alike.
CIPHER_SUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
)

# The kernel settings kubelet with protectKernelDefaults refuses to start without (it no longer writes them
# itself): set by the prepare phase in /etc/sysctl.d.
KUBELET_KERNEL = {
    "vm.overcommit_memory": "1",
    "vm.panic_on_oom": "0",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxkeys": "1000000",
    "kernel.keys.root_maxbytes": "25000000",
}

POD_PIDS_LIMIT = 4096  # per pod: a fork bomb stops there, not at the node's pid_max (CIS 4.2.13)
TERMINATED_POD_GC_THRESHOLD = 1000  # the controller-manager deletes finished pods beyond this (CIS 1.3.1)
# Admission plugins on top of the defaults: NodeRestriction (kubelets edit only their own objects),
# EventRateLimit (bounded events per server and namespace), DenyServiceExternalIPs (no Service can claim an
# external IP, CVE-2020-8554). AlwaysPullImages is the inventory's choice (api.always_pull_images).
ADMISSION_PLUGINS = ("NodeRestriction", "EventRateLimit", "DenyServiceExternalIPs")
EVENT_RATE_LIMITS = (("Server", 50, 100), ("Namespace", 50, 100))  # (type, qps, burst)
