# What phase 2 to 4 need, read by the Ansible inventory
# (deploy/ansible/inventory/terraform.py runs `terraform output -json`).
# checks/fixtures/terraform-output.json is an example of that JSON, and the
# inventory's test.

output "cluster_name" {
  description = "The cluster's name."
  value       = var.cluster_name
}

output "ssh_user" {
  description = "Ansible's remote user on every instance."
  value       = var.ssh_user
}

output "vip" {
  description = "The gateways' virtual IP in the private subnet: kubeadm's controlPlaneEndpoint (port 6443)."
  value       = local.vip
}

output "public_ip" {
  description = "The floating IP of the virtual IP: WireGuard's endpoint and the ingress ports."
  value       = openstack_networking_floatingip_v2.public.address
}

output "network" {
  description = "The private network's CIDRs and the WireGuard port."
  value = {
    subnet_cidr    = var.subnet_cidr
    pod_cidr       = var.pod_cidr
    service_cidr   = var.service_cidr
    wireguard_cidr = var.wireguard_cidr
    wireguard_port = var.wireguard_port
  }
}

output "openstack" {
  description = "IDs the OpenStack cloud controller manager needs in its cloud.conf."
  value = {
    network_id          = openstack_networking_network_v2.private.id
    subnet_id           = openstack_networking_subnet_v2.private.id
    floating_network_id = data.openstack_networking_network_v2.external.id
    router_id           = openstack_networking_router_v2.main.id
  }
}

output "gateways" {
  description = "Gateways by name: private and floating (SSH of phase 2) addresses."
  value = {
    for name, g in local.gateways : name => {
      private_ip = g.ip
      public_ip  = openstack_networking_floatingip_v2.gateway[name].address
    }
  }
}

output "masters" {
  description = "Control-plane nodes by name; the first runs kubeadm init."
  value = {
    for name, m in local.masters : name => {
      private_ip = m.ip
    }
  }
}

output "workers" {
  description = "Workers by name: address, pool, node labels and taints."
  value = {
    for name, w in local.workers : name => {
      private_ip = openstack_networking_port_v2.worker[name].all_fixed_ips[0]
      pool       = w.pool
      labels     = w.labels
      taints     = w.taints
    }
  }
}
