"""The task collection shared by `fab` (through fabfile.py) and the `kubefab` command."""

from invoke.collection import Collection

from kubefab.playbooks.lab.tasks import lab
from kubefab.playbooks.tasks import (
    audit,
    deploy,
    etcd,
    imports,
    init,
    inventory,
    kubeconfig,
    node,
    pki,
    render,
    reset,
    upgrade,
    verify,
)
from kubefab.playbooks.tasks.images import images
from kubefab.playbooks.tasks.vagrant import vagrant

ns = Collection()
ns.add_task(init.init)
ns.add_collection(inventory.ns)
ns.add_task(pki.pki)
ns.add_collection(pki.certs)
ns.add_task(render.render)
ns.add_task(audit.audit)
ns.add_collection(lab)
ns.add_task(deploy.deploy)
ns.add_task(deploy.plan)
ns.add_task(upgrade.upgrade_task, name="upgrade")
ns.add_task(deploy.fetch_bundle)
ns.add_collection(images)
ns.add_task(verify.verify)
ns.add_task(reset.reset)
ns.add_collection(node.node)
ns.add_collection(etcd.etcd)
ns.add_task(kubeconfig.kubeconfig)
ns.add_task(imports.import_inventory)
ns.add_collection(vagrant)
