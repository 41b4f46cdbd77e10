# Security groups: each tier admits only what it needs. Egress stays open
# (the default rules of a new group): packages, images, the OpenStack APIs.
#
#   gateway  51820/udp from wireguard_client_cidrs, 80/443 from
#            ingress_cidrs, 22 from admin_ssh_cidrs (phase 2 only), VRRP
#            from the gateways, 6443 from the nodes (the API on the VIP),
#            22 from the gateways (SSH jumps through the VIP's holder)
#   master   6443 from the gateways (HAProxy) and the nodes (the
#            `kubernetes` Service), 2379-2380 from the masters (etcd)
#   node     (masters and workers) kubelet, Calico VXLAN and Typha,
#            node-exporter from the nodes; NodePorts from the gateways;
#            22 from the WireGuard tunnel addresses

resource "openstack_networking_secgroup_v2" "gateway" {
  name        = "${var.cluster_name}-gateway"
  description = "gateways: WireGuard, ingress, VRRP, the API on the virtual IP"
}

resource "openstack_networking_secgroup_v2" "master" {
  name        = "${var.cluster_name}-master"
  description = "control plane: API server and etcd"
}

resource "openstack_networking_secgroup_v2" "node" {
  name        = "${var.cluster_name}-node"
  description = "every Kubernetes node: kubelet, pod network, NodePorts"
}

resource "openstack_networking_secgroup_rule_v2" "gateway_wireguard" {
  for_each          = toset(var.wireguard_client_cidrs)
  description       = "WireGuard, the operators' way in"
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "udp"
  port_range_min    = var.wireguard_port
  port_range_max    = var.wireguard_port
  remote_ip_prefix  = each.value
}

resource "openstack_networking_secgroup_rule_v2" "gateway_ingress" {
  for_each = {
    for pair in setproduct([80, 443], var.ingress_cidrs) : "${pair[0]} ${pair[1]}" => {
      port = pair[0]
      cidr = pair[1]
    }
  }
  description       = "ingress (HAProxy to the ingress NodePorts)"
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.cidr
}

resource "openstack_networking_secgroup_rule_v2" "gateway_ssh_admin" {
  for_each          = toset(var.admin_ssh_cidrs)
  description       = "SSH for the first run of phase 2, before WireGuard exists"
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = each.value
}

resource "openstack_networking_secgroup_rule_v2" "gateway_vrrp" {
  description       = "VRRP between the gateways (keepalived, unicast)"
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "vrrp"
  remote_group_id   = openstack_networking_secgroup_v2.gateway.id
}

resource "openstack_networking_secgroup_rule_v2" "gateway_api_from_nodes" {
  description       = "the API server through HAProxy on the virtual IP"
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_group_id   = openstack_networking_secgroup_v2.node.id
}

resource "openstack_networking_secgroup_rule_v2" "master_api_from_gateways" {
  description       = "HAProxy to the API servers"
  security_group_id = openstack_networking_secgroup_v2.master.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_group_id   = openstack_networking_secgroup_v2.gateway.id
}

resource "openstack_networking_secgroup_rule_v2" "master_api_from_nodes" {
  description       = "the kubernetes Service (kube-proxy sends to the API servers directly)"
  security_group_id = openstack_networking_secgroup_v2.master.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 6443
  port_range_max    = 6443
  remote_group_id   = openstack_networking_secgroup_v2.node.id
}

resource "openstack_networking_secgroup_rule_v2" "master_etcd" {
  description       = "etcd clients and peers (stacked on the masters)"
  security_group_id = openstack_networking_secgroup_v2.master.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 2379
  port_range_max    = 2380
  remote_group_id   = openstack_networking_secgroup_v2.master.id
}

resource "openstack_networking_secgroup_rule_v2" "node_internal" {
  for_each = {
    kubelet       = { protocol = "tcp", min = 10250, max = 10250 }
    calico_vxlan  = { protocol = "udp", min = 4789, max = 4789 }
    calico_typha  = { protocol = "tcp", min = 5473, max = 5473 }
    node_exporter = { protocol = "tcp", min = 9100, max = 9100 }
  }
  description       = "between nodes: ${each.key}"
  security_group_id = openstack_networking_secgroup_v2.node.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value.protocol
  port_range_min    = each.value.min
  port_range_max    = each.value.max
  remote_group_id   = openstack_networking_secgroup_v2.node.id
}

resource "openstack_networking_secgroup_rule_v2" "node_nodeports" {
  description       = "NodePorts, from HAProxy on the gateways"
  security_group_id = openstack_networking_secgroup_v2.node.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 30000
  port_range_max    = 32767
  remote_group_id   = openstack_networking_secgroup_v2.gateway.id
}

resource "openstack_networking_secgroup_rule_v2" "node_ssh_wireguard" {
  description       = "SSH from the operators' WireGuard addresses (Ansible, phases 3 and 4)"
  security_group_id = openstack_networking_secgroup_v2.node.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = var.wireguard_cidr
}

resource "openstack_networking_secgroup_rule_v2" "gateway_ssh_jump" {
  description       = "SSH between gateways: later runs of phase 2 jump through the one holding the virtual IP"
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_group_id   = openstack_networking_secgroup_v2.gateway.id
}
