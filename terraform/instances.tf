# The instances: gateways, masters and the worker pools, each on a boot
# volume made from the image, in an anti-affinity server group of its role
# or pool, with a port of the private network and cloud-init user data.
# Ceph's OSD and mon volumes are not made here: Rook claims them through
# the Cinder CSI StorageClass `cinder` (deploy/storage), so that an OSD can
# follow its volume to another node.

resource "openstack_compute_keypair_v2" "operator" {
  name       = "${var.cluster_name}-operator"
  public_key = var.ssh_public_key
}

resource "openstack_compute_servergroup_v2" "gateways" {
  name     = "${var.cluster_name}-gateways"
  policies = ["anti-affinity"]
}

resource "openstack_compute_servergroup_v2" "masters" {
  name     = "${var.cluster_name}-masters"
  policies = ["anti-affinity"]
}

resource "openstack_compute_servergroup_v2" "pool" {
  for_each = var.worker_pools
  name     = "${var.cluster_name}-${each.key}"
  policies = [each.value.server_group_policy]
}

# Ports: fixed addresses for the gateways and masters. The gateways' ports
# may carry the virtual IP (keepalived) and forward the WireGuard tunnel's
# addresses into the private network.
resource "openstack_networking_port_v2" "gateway" {
  for_each           = local.gateways
  name               = each.key
  network_id         = openstack_networking_network_v2.private.id
  security_group_ids = [openstack_networking_secgroup_v2.gateway.id]

  fixed_ip {
    subnet_id  = openstack_networking_subnet_v2.private.id
    ip_address = each.value.ip
  }

  allowed_address_pairs {
    ip_address = local.vip
  }

  allowed_address_pairs {
    ip_address = var.wireguard_cidr
  }
}

resource "openstack_networking_port_v2" "master" {
  for_each   = local.masters
  name       = each.key
  network_id = openstack_networking_network_v2.private.id
  security_group_ids = [
    openstack_networking_secgroup_v2.master.id,
    openstack_networking_secgroup_v2.node.id,
  ]

  fixed_ip {
    subnet_id  = openstack_networking_subnet_v2.private.id
    ip_address = each.value.ip
  }
}

resource "openstack_networking_port_v2" "worker" {
  for_each           = local.workers
  name               = each.key
  network_id         = openstack_networking_network_v2.private.id
  security_group_ids = [openstack_networking_secgroup_v2.node.id]

  fixed_ip {
    subnet_id = openstack_networking_subnet_v2.private.id
  }
}

# Boot volumes, kept when an instance is replaced (delete_on_termination
# false below): a master's etcd data survives a rebuild of its instance.
resource "openstack_blockstorage_volume_v3" "gateway" {
  for_each    = local.gateways
  name        = "${each.key}-boot"
  size        = var.gateway_volume_gb
  image_id    = data.openstack_images_image_v2.os.id
  volume_type = var.volume_type
}

resource "openstack_blockstorage_volume_v3" "master" {
  for_each    = local.masters
  name        = "${each.key}-boot"
  size        = var.master_volume_gb
  image_id    = data.openstack_images_image_v2.os.id
  volume_type = var.volume_type
}

resource "openstack_blockstorage_volume_v3" "worker" {
  for_each    = local.workers
  name        = "${each.key}-boot"
  size        = each.value.volume_gb
  image_id    = data.openstack_images_image_v2.os.id
  volume_type = var.volume_type
}

resource "openstack_compute_instance_v2" "gateway" {
  for_each    = local.gateways
  name        = each.key
  flavor_name = var.gateway_flavor
  key_pair    = openstack_compute_keypair_v2.operator.name
  user_data = templatefile("${path.module}/cloud-init/node.yaml.tftpl", {
    hostname = each.key
    role     = "gateway"
  })

  block_device {
    uuid                  = openstack_blockstorage_volume_v3.gateway[each.key].id
    source_type           = "volume"
    destination_type      = "volume"
    boot_index            = 0
    delete_on_termination = false
  }

  network {
    port = openstack_networking_port_v2.gateway[each.key].id
  }

  scheduler_hints {
    group = openstack_compute_servergroup_v2.gateways.id
  }

  metadata = {
    cluster = var.cluster_name
    role    = "gateway"
  }
}

resource "openstack_compute_instance_v2" "master" {
  for_each    = local.masters
  name        = each.key
  flavor_name = var.master_flavor
  key_pair    = openstack_compute_keypair_v2.operator.name
  user_data = templatefile("${path.module}/cloud-init/node.yaml.tftpl", {
    hostname = each.key
    role     = "master"
  })

  block_device {
    uuid                  = openstack_blockstorage_volume_v3.master[each.key].id
    source_type           = "volume"
    destination_type      = "volume"
    boot_index            = 0
    delete_on_termination = false
  }

  network {
    port = openstack_networking_port_v2.master[each.key].id
  }

  scheduler_hints {
    group = openstack_compute_servergroup_v2.masters.id
  }

  metadata = {
    cluster = var.cluster_name
    role    = "master"
  }
}

resource "openstack_compute_instance_v2" "worker" {
  for_each    = local.workers
  name        = each.key
  flavor_name = each.value.flavor
  key_pair    = openstack_compute_keypair_v2.operator.name
  user_data = templatefile("${path.module}/cloud-init/node.yaml.tftpl", {
    hostname = each.key
    role     = "worker-${each.value.pool}"
  })

  block_device {
    uuid                  = openstack_blockstorage_volume_v3.worker[each.key].id
    source_type           = "volume"
    destination_type      = "volume"
    boot_index            = 0
    delete_on_termination = false
  }

  network {
    port = openstack_networking_port_v2.worker[each.key].id
  }

  scheduler_hints {
    group = openstack_compute_servergroup_v2.pool[each.value.pool].id
  }

  metadata = {
    cluster = var.cluster_name
    role    = "worker"
    pool    = each.value.pool
  }
}
