# What the other files share: the image and the external network looked
# up by name, the fixed addresses of the subnet, and the nodes of each role
# as maps keyed by their names.

data "openstack_images_image_v2" "os" {
  name        = var.image_name
  most_recent = true
}

data "openstack_networking_network_v2" "external" {
  name     = var.external_network
  external = true
}

locals {
  # The gateways' virtual IP (kubeadm's controlPlaneEndpoint), then fixed
  # addresses for the gateways and the masters; workers take theirs from
  # DHCP (the allocation pool starts at .100).
  vip = cidrhost(var.subnet_cidr, 10)

  gateways = {
    for i in range(var.gateway_count) : format("%s-gw-%d", var.cluster_name, i + 1) => {
      ip = cidrhost(var.subnet_cidr, 11 + i)
    }
  }

  masters = {
    for i in range(var.master_count) : format("%s-master-%d", var.cluster_name, i + 1) => {
      ip = cidrhost(var.subnet_cidr, 21 + i)
    }
  }

  workers = merge([
    for pool, p in var.worker_pools : {
      for i in range(p.count) : format("%s-%s-%d", var.cluster_name, pool, i + 1) => {
        pool      = pool
        flavor    = p.flavor
        volume_gb = p.volume_gb
        labels    = merge(p.labels, { "node.pagestream.io/pool" = pool })
        taints    = p.taints
      }
    }
  ]...)

  # The private CIDRs must not overlap: two overlap when the first address
  # of one lies inside the other.
  cidr_names  = ["subnet_cidr", "pod_cidr", "service_cidr", "wireguard_cidr"]
  cidr_values = [var.subnet_cidr, var.pod_cidr, var.service_cidr, var.wireguard_cidr]
  overlapping_cidrs = flatten([
    for i, a in local.cidr_values : [
      for j, b in local.cidr_values : "${local.cidr_names[i]} and ${local.cidr_names[j]}"
      if i < j && (
        cidrhost("${cidrhost(b, 0)}/${split("/", a)[1]}", 0) == cidrhost(a, 0) ||
        cidrhost("${cidrhost(a, 0)}/${split("/", b)[1]}", 0) == cidrhost(b, 0)
      )
    ]
  ])
}
