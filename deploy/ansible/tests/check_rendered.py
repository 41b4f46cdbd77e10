"""Checks the files tests/render.yml rendered from the roles.

    python check_rendered.py kubeadm RENDER_DIR INVENTORY_JSON INIT_TASKS
    python check_rendered.py vrrp RENDER_DIR INVENTORY_JSON

INVENTORY_JSON is what the inventory gave (`inventory/terraform.py --list`),
RENDER_DIR holds one folder per host. One line per problem, exit 1 if any.

kubeadm: what makes the control plane highly available and the pod network
agree with kubeadm: the first master's InitConfiguration carries a
certificate key and INIT_TASKS runs `kubeadm init` with --upload-certs; the
other masters join as control plane with that key; every node joins
through controlPlaneEndpoint = the VIP:6443; podSubnet = pod_cidr =
Calico's IP pool = kube-proxy's clusterCIDR; serviceSubnet =
service_cidr; the pod, service and node networks do not overlap; each
worker carries its pool label and taints.

vrrp: the gateways agree: one virtual router id and VIP, distinct
priorities, each one's unicast peers are exactly the other gateways.
"""

import ipaddress
import json
import pathlib
import re
import sys

import yaml

KEY = re.compile(r"^[0-9a-f]{64}$")


def documents(path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not rendered")
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def kubeadm(render, inv, init_tasks):
    errors = []
    vars_ = inv["all"]["vars"]
    hostvars = inv["_meta"]["hostvars"]
    masters = inv["masters"]["hosts"]
    workers = inv["workers"]["hosts"]
    endpoint = f"{vars_['vip']}:6443"
    pod, service, subnet = (ipaddress.ip_network(vars_[k]) for k in ("pod_cidr", "service_cidr", "subnet_cidr"))
    for a, b in ((pod, service), (pod, subnet), (service, subnet)):
        if a.overlaps(b):
            errors.append(f"inventory: {a} and {b} overlap")

    first = masters[0]
    try:
        init = documents(render / first / "kubeadm.yaml")
        calico = documents(render / first / "calico-installation.yaml")
    except (FileNotFoundError, yaml.YAMLError) as e:
        return [str(e)]
    cluster = init.get("ClusterConfiguration", {})
    init_cfg = init.get("InitConfiguration")
    if init_cfg is None:
        errors.append(f"{first}: no InitConfiguration")
        init_cfg = {}
    if cluster.get("controlPlaneEndpoint") != endpoint:
        errors.append(f"{first}: controlPlaneEndpoint is {cluster.get('controlPlaneEndpoint')!r}, not the VIP {endpoint}")
    key = str(init_cfg.get("certificateKey", ""))
    if not KEY.match(key):
        errors.append(f"{first}: InitConfiguration has no certificateKey (64 hex digits): the other masters get no certificates")
    if init_cfg.get("localAPIEndpoint", {}).get("advertiseAddress") != hostvars[first]["private_ip"]:
        errors.append(f"{first}: advertiseAddress is not its private address")
    net = cluster.get("networking", {})
    if net.get("podSubnet") != str(pod):
        errors.append(f"{first}: podSubnet {net.get('podSubnet')!r} is not pod_cidr {pod}")
    if net.get("serviceSubnet") != str(service):
        errors.append(f"{first}: serviceSubnet {net.get('serviceSubnet')!r} is not service_cidr {service}")
    proxy = init.get("KubeProxyConfiguration", {})
    if proxy.get("clusterCIDR") != str(pod):
        errors.append(f"{first}: kube-proxy clusterCIDR {proxy.get('clusterCIDR')!r} is not pod_cidr {pod}")
    pools = calico.get("Installation", {}).get("spec", {}).get("calicoNetwork", {}).get("ipPools", [])
    if [p.get("cidr") for p in pools] != [str(pod)]:
        errors.append(f"{first}: Calico's IP pools {[p.get('cidr') for p in pools]} are not [pod_cidr {pod}]")
    for p in pools:
        if int(p.get("blockSize", 26)) < pod.prefixlen:
            errors.append(f"{first}: Calico blockSize {p.get('blockSize')} is larger than pod_cidr {pod}")

    tasks = yaml.safe_load(pathlib.Path(init_tasks).read_text())
    commands = [
        str(t.get("ansible.builtin.command", ""))
        for block in tasks
        for t in block.get("block", [block])
    ]
    if not any("kubeadm init" in c and "--upload-certs" in c for c in commands):
        errors.append(f"{init_tasks}: kubeadm init runs without --upload-certs")

    for host in masters[1:] + workers:
        try:
            join = documents(render / host / "kubeadm.yaml").get("JoinConfiguration")
        except (FileNotFoundError, yaml.YAMLError) as e:
            errors.append(str(e))
            continue
        if join is None:
            errors.append(f"{host}: no JoinConfiguration")
            continue
        discovery = join.get("discovery", {}).get("bootstrapToken", {})
        if discovery.get("apiServerEndpoint") != endpoint:
            errors.append(f"{host}: joins through {discovery.get('apiServerEndpoint')!r}, not the VIP {endpoint}")
        if not all(str(h).startswith("sha256:") for h in discovery.get("caCertHashes") or [None]):
            errors.append(f"{host}: no CA certificate hash to pin")
        control = join.get("controlPlane")
        if host in masters:
            if not control or control.get("certificateKey") != key:
                errors.append(f"{host}: a master that does not join as control plane with the first master's certificate key")
        elif control:
            errors.append(f"{host}: a worker that joins as control plane")
        else:
            reg = join.get("nodeRegistration", {})
            args = {a["name"]: a["value"] for a in reg.get("kubeletExtraArgs", [])}
            labels = dict(kv.split("=", 1) for kv in args.get("node-labels", "").split(",") if kv)
            want = hostvars[host]["node_labels"]
            if labels != want:
                errors.append(f"{host}: node labels {labels} are not the inventory's {want}")
            taints = [f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in reg.get("taints") or []]
            if taints != hostvars[host]["node_taints"]:
                errors.append(f"{host}: taints {taints} are not the inventory's {hostvars[host]['node_taints']}")
    return errors


def vrrp(render, inv):
    errors = []
    hostvars = inv["_meta"]["hostvars"]
    gateways = inv["gateways"]["hosts"]
    vip = inv["all"]["vars"]["vip"]
    seen = {}
    for host in gateways:
        path = render / host / "keepalived.conf"
        if not path.is_file():
            errors.append(f"{path}: not rendered")
            continue
        text = path.read_text()
        router_id = re.search(r"virtual_router_id\s+(\d+)", text)
        priority = re.search(r"priority\s+(\d+)", text)
        peers = re.search(r"unicast_peer\s*\{([^}]*)\}", text)
        vips = re.search(r"virtual_ipaddress\s*\{\s*([0-9.]+)/", text)
        seen[host] = (
            router_id and router_id.group(1),
            priority and int(priority.group(1)),
            sorted(peers.group(1).split()) if peers else [],
            vips and vips.group(1),
        )
        want_peers = sorted(hostvars[g]["private_ip"] for g in gateways if g != host)
        if seen[host][2] != want_peers:
            errors.append(f"{host}: unicast peers {seen[host][2]} are not the other gateways {want_peers}")
        if seen[host][3] != vip:
            errors.append(f"{host}: virtual IP {seen[host][3]} is not {vip}")
    if len({s[0] for s in seen.values()}) > 1:
        errors.append(f"gateways disagree on virtual_router_id: { {h: s[0] for h, s in seen.items()} }")
    priorities = [s[1] for s in seen.values()]
    if len(set(priorities)) != len(priorities):
        errors.append(f"gateways share a VRRP priority: {priorities}")
    return errors


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("kubeadm", "vrrp"):
        sys.exit(__doc__)
    render = pathlib.Path(sys.argv[2])
    inv = json.loads(pathlib.Path(sys.argv[3]).read_text())
    errors = kubeadm(render, inv, sys.argv[4]) if sys.argv[1] == "kubeadm" else vrrp(render, inv)
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print(f"{sys.argv[1]}: rendered files consistent with the inventory")


if __name__ == "__main__":
    main()
