#!/usr/bin/env python3
"""Ansible inventory from phase 1's `terraform output -json`.

    ansible-inventory -i inventory/terraform.py --list

Reads the JSON from the file named by PAGESTREAM_TF_OUTPUT when it is set
(terraform/checks/fixtures/terraform-output.json is an example), otherwise
runs `terraform -chdir=<repo>/terraform output -json`. Groups: gateways,
masters (the first one runs kubeadm init), workers with one child group per
pool (workers_<pool>), k8s_cluster (masters and workers). Every host gets
private_ip (gateways also public_ip), workers node_pool, node_labels and
node_taints; the cluster's addresses and CIDRs are variables of all.
Refuses (exit 1, with the reason) an output it cannot build a sound
cluster from.
"""

import ipaddress
import json
import os
import pathlib
import re
import subprocess
import sys

REQUIRED = ("cluster_name", "ssh_user", "vip", "public_ip", "network", "openstack", "gateways", "masters", "workers")
TERRAFORM_DIR = pathlib.Path(__file__).resolve().parents[3] / "terraform"


class InventoryError(Exception):
    """One line per problem."""


def natural(name):
    """pagestream-cpu-10 after pagestream-cpu-9."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load():
    path = os.environ.get("PAGESTREAM_TF_OUTPUT")
    if path:
        text = pathlib.Path(path).read_text()
    else:
        text = subprocess.run(
            ["terraform", f"-chdir={TERRAFORM_DIR}", "output", "-json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    outputs = json.loads(text)
    out = {name: o["value"] for name, o in outputs.items()}
    check(out)
    return out


def check(out):
    """Every problem of the output at once, before anything is built."""
    problems = [f"terraform output: missing {name} (has phase 1 been applied?)" for name in REQUIRED if name not in out]
    if len(out.get("gateways", {})) < 2:
        problems.append(f"gateways: {len(out.get('gateways', {}))}, need at least 2 for the virtual IP to move")
    if len(out.get("masters", {})) not in (3, 5):
        problems.append(f"masters: {len(out.get('masters', {}))}, need 3 or 5 (etcd quorum)")
    for name, w in out.get("workers", {}).items():
        pool = w.get("pool")
        if not isinstance(pool, str) or not re.fullmatch(r"[a-z][a-z0-9]*", pool):
            problems.append(f"{name}: no pool, or not a pool name: {pool!r}")
    if problems:
        raise InventoryError("\n".join(problems))


def address(what, value, network=None):
    try:
        ip = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise InventoryError(f"{what}: not an IP address: {value!r}") from None
    if network is not None and ip not in network:
        raise InventoryError(f"{what}: {ip} is outside the subnet {network}")
    return str(ip)


def build(out):
    net = out["network"]
    try:
        subnet = ipaddress.ip_network(net["subnet_cidr"])
        for key in ("pod_cidr", "service_cidr", "wireguard_cidr"):
            ipaddress.ip_network(net[key])
    except (KeyError, ValueError) as e:
        raise InventoryError(f"network: {e}") from None

    hostvars, groups = {}, {"gateways": [], "masters": [], "workers": []}
    for name in sorted(out["gateways"], key=natural):
        g = out["gateways"][name]
        hostvars[name] = {
            "private_ip": address(f"{name}.private_ip", g.get("private_ip"), subnet),
            "public_ip": address(f"{name}.public_ip", g.get("public_ip")),
        }
        groups["gateways"].append(name)
    for name in sorted(out["masters"], key=natural):
        hostvars[name] = {"private_ip": address(f"{name}.private_ip", out["masters"][name].get("private_ip"), subnet)}
        groups["masters"].append(name)
    for name in sorted(out["workers"], key=natural):
        w = out["workers"][name]
        pool = w["pool"]
        hostvars[name] = {
            "private_ip": address(f"{name}.private_ip", w.get("private_ip"), subnet),
            "node_pool": pool,
            "node_labels": dict(w.get("labels") or {}),
            "node_taints": list(w.get("taints") or []),
        }
        groups["workers"].append(name)
        groups.setdefault(f"workers_{pool}", []).append(name)

    seen = {}
    for name, hv in hostvars.items():
        other = seen.setdefault(hv["private_ip"], name)
        if other != name:
            raise InventoryError(f"{name} and {other} have the same address {hv['private_ip']}")
    vip = address("vip", out["vip"], subnet)
    if vip in seen:
        raise InventoryError(f"vip {vip} is also the address of {seen[vip]}")

    inventory = {
        "_meta": {"hostvars": hostvars},
        "all": {
            "children": ["gateways", "k8s_cluster"],
            "vars": {
                "ansible_user": out["ssh_user"],
                "cluster_name": out["cluster_name"],
                "vip": vip,
                "public_ip": address("public_ip", out["public_ip"]),
                "subnet_cidr": str(subnet),
                "subnet_prefix": subnet.prefixlen,
                "pod_cidr": net["pod_cidr"],
                "service_cidr": net["service_cidr"],
                "wireguard_cidr": net["wireguard_cidr"],
                # The gateways' end of the tunnel: the first address, with its prefix.
                "wireguard_gateway_address": f"{next(ipaddress.ip_network(net['wireguard_cidr']).hosts())}/{ipaddress.ip_network(net['wireguard_cidr']).prefixlen}",
                "wireguard_port": int(net["wireguard_port"]),
                "openstack_ids": dict(out["openstack"]),
            },
        },
        "k8s_cluster": {"children": ["masters", "workers"]},
        "workers": {"hosts": groups.pop("workers"), "children": sorted(g for g in groups if g.startswith("workers_"))},
    }
    for group, hosts in groups.items():
        inventory[group] = {"hosts": hosts}
    return inventory


def main():
    try:
        inventory = build(load())
    except (InventoryError, OSError, ValueError, subprocess.CalledProcessError) as e:
        for line in str(e).splitlines():
            print(f"inventory/terraform.py: {line}", file=sys.stderr)
        sys.exit(1)
    if len(sys.argv) == 3 and sys.argv[1] == "--host":
        print(json.dumps(inventory["_meta"]["hostvars"].get(sys.argv[2], {})))
    else:
        print(json.dumps(inventory, indent=2))


if __name__ == "__main__":
    main()
