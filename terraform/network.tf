# The private network: one subnet behind a router to the external network,
# the gateways' virtual IP on a port of its own with the public floating IP,
# and a floating IP per gateway for the first SSH of phase 2.

resource "openstack_networking_network_v2" "private" {
  name           = "${var.cluster_name}-private"
  admin_state_up = true
}

resource "openstack_networking_subnet_v2" "private" {
  name            = "${var.cluster_name}-private"
  network_id      = openstack_networking_network_v2.private.id
  cidr            = var.subnet_cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers

  allocation_pool {
    start = cidrhost(var.subnet_cidr, 100)
    end   = cidrhost(var.subnet_cidr, -2)
  }

  lifecycle {
    precondition {
      condition     = length(local.overlapping_cidrs) == 0
      error_message = "These CIDRs overlap: ${join(", ", local.overlapping_cidrs)}."
    }
  }
}

resource "openstack_networking_router_v2" "main" {
  name                = "${var.cluster_name}-router"
  admin_state_up      = true
  external_network_id = data.openstack_networking_network_v2.external.id
}

resource "openstack_networking_router_interface_v2" "private" {
  router_id = openstack_networking_router_v2.main.id
  subnet_id = openstack_networking_subnet_v2.private.id
}

# Replies to the operators' tunnel addresses go to the gateway holding the
# virtual IP, whose WireGuard interface has the session (DHCP hands this
# route to every instance; no NAT on the gateways).
resource "openstack_networking_subnet_route_v2" "wireguard" {
  subnet_id        = openstack_networking_subnet_v2.private.id
  destination_cidr = var.wireguard_cidr
  next_hop         = local.vip
}

# The virtual IP: a port no instance is bound to, reserving the address.
# keepalived moves it between the gateways, whose ports allow it
# (allowed_address_pairs in instances.tf).
resource "openstack_networking_port_v2" "vip" {
  name               = "${var.cluster_name}-vip"
  network_id         = openstack_networking_network_v2.private.id
  security_group_ids = [openstack_networking_secgroup_v2.gateway.id]

  fixed_ip {
    subnet_id  = openstack_networking_subnet_v2.private.id
    ip_address = local.vip
  }
}

# The public endpoint: WireGuard and the ingress ports, on whichever
# gateway holds the virtual IP.
resource "openstack_networking_floatingip_v2" "public" {
  pool        = var.external_network
  port_id     = openstack_networking_port_v2.vip.id
  description = "${var.cluster_name}: the gateways' virtual IP"
  depends_on  = [openstack_networking_router_interface_v2.private]
}

resource "openstack_networking_floatingip_v2" "gateway" {
  for_each    = local.gateways
  pool        = var.external_network
  port_id     = openstack_networking_port_v2.gateway[each.key].id
  description = "${each.key}: SSH from admin_ssh_cidrs only"
  depends_on  = [openstack_networking_router_interface_v2.private]
}
