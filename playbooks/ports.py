"""The fixed ports of the cluster's daemons (upstream's defaults), named once: the component declarations,
the templates (as `ports.<name>`), the phase checks and the testinfra suite all read them from here. The
inventory's own ports (api.port, api.apiserver_port, api.stats.port) come from the model."""

from __future__ import annotations

ETCD_CLIENT = 2379
ETCD_PEER = 2380
ETCD_METRICS = 2381
CONTROLLER_MANAGER = 10257
SCHEDULER = 10259
KUBELET = 10250
KUBELET_HEALTHZ = 10248
KUBE_PROXY_HEALTHZ = 10256
KUBE_PROXY_METRICS = 10249
NODE_PORTS = (30000, 32767)  # kube-apiserver's default --service-node-port-range
CALICO_BGP = 179
CALICO_VXLAN = 4789
FLANNEL_VXLAN = 8472

TEMPLATE = {name.lower(): value for name, value in dict(globals()).items() if name.isupper() and name != "TEMPLATE"}
