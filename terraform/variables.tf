# Inputs of phase 1. terraform.tfvars.example shows a complete set; every
# variable is checked here, before anything is created.

variable "cloud" {
  description = "Entry of clouds.yaml with the credentials and region of the OpenStack project."
  type        = string
  default     = "openstack"
}

variable "cluster_name" {
  description = "Prefix of every resource name, and the Kubernetes cluster name."
  type        = string
  default     = "pagestream"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.cluster_name))
    error_message = "cluster_name: 2 to 20 characters, lowercase letters, digits and '-', starting with a letter."
  }
}

variable "image_name" {
  description = "Glance image of every instance (Ubuntu 24.04 or Debian 12, with cloud-init)."
  type        = string
  default     = "Ubuntu 24.04"
}

variable "external_network" {
  description = "Name of the external (provider) network: the router's gateway and the pool of the floating IPs."
  type        = string
  default     = "public"
}

variable "dns_nameservers" {
  description = "DNS servers handed out by the private subnet's DHCP."
  type        = list(string)
  default     = ["1.1.1.1", "9.9.9.9"]

  validation {
    condition     = length(var.dns_nameservers) > 0 && alltrue([for ip in var.dns_nameservers : can(cidrhost("${ip}/32", 0))])
    error_message = "dns_nameservers: at least one, each an IPv4 address."
  }
}

variable "ssh_public_key" {
  description = "Public key installed for ssh_user on every instance (the OpenStack keypair)."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key: an OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa-sha2-*)."
  }
}

variable "ssh_user" {
  description = "Login user of the image (Ansible's remote user)."
  type        = string
  default     = "ubuntu"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user: a POSIX user name."
  }
}

variable "subnet_cidr" {
  description = "The private subnet of every instance. Fixed addresses: .10 the gateways' virtual IP, .11 on the gateways, .21 on the masters."
  type        = string
  default     = "10.10.0.0/22"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0)) && tonumber(split("/", var.subnet_cidr)[1]) >= 16 && tonumber(split("/", var.subnet_cidr)[1]) <= 26
    error_message = "subnet_cidr: an IPv4 CIDR with a prefix from /16 to /26."
  }
}

variable "pod_cidr" {
  description = "Pod addresses (kubeadm podSubnet and Calico's IP pool)."
  type        = string
  default     = "10.244.0.0/16"

  validation {
    condition     = can(cidrhost(var.pod_cidr, 0)) && tonumber(split("/", var.pod_cidr)[1]) <= 20
    error_message = "pod_cidr: an IPv4 CIDR of /20 or larger (each node takes a /26 block)."
  }
}

variable "service_cidr" {
  description = "Service addresses (kubeadm serviceSubnet)."
  type        = string
  default     = "10.96.0.0/12"

  validation {
    condition     = can(cidrhost(var.service_cidr, 0)) && tonumber(split("/", var.service_cidr)[1]) >= 12 && tonumber(split("/", var.service_cidr)[1]) <= 24
    error_message = "service_cidr: an IPv4 CIDR with a prefix from /12 to /24."
  }
}

variable "wireguard_cidr" {
  description = "Tunnel addresses of the operators' WireGuard peers; the gateways hold its first address."
  type        = string
  default     = "10.99.0.0/24"

  validation {
    condition     = can(cidrhost(var.wireguard_cidr, 0)) && tonumber(split("/", var.wireguard_cidr)[1]) >= 16 && tonumber(split("/", var.wireguard_cidr)[1]) <= 29
    error_message = "wireguard_cidr: an IPv4 CIDR with a prefix from /16 to /29."
  }
}

variable "wireguard_port" {
  description = "UDP port of WireGuard on the gateways (behind the public floating IP)."
  type        = number
  default     = 51820

  validation {
    condition     = var.wireguard_port >= 1024 && var.wireguard_port <= 65535 && floor(var.wireguard_port) == var.wireguard_port
    error_message = "wireguard_port: an integer from 1024 to 65535."
  }
}

variable "wireguard_client_cidrs" {
  description = "Where operators may reach WireGuard from (the only way into the private network)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.wireguard_client_cidrs : can(cidrhost(c, 0))])
    error_message = "wireguard_client_cidrs: each an IPv4 CIDR."
  }
}

variable "ingress_cidrs" {
  description = "Who may reach the ingress ports 80 and 443 on the public floating IP."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "ingress_cidrs: each an IPv4 CIDR."
  }
}

variable "admin_ssh_cidrs" {
  description = "Who may SSH to the gateways' own floating IPs. Phase 2 needs it once (WireGuard does not exist yet); set it back to [] afterwards."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_ssh_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_ssh_cidrs: each an IPv4 CIDR, and not 0.0.0.0/0."
  }
}

variable "gateway_count" {
  description = "Gateways (HAProxy, keepalived, WireGuard) sharing the virtual IP."
  type        = number
  default     = 3

  validation {
    condition     = var.gateway_count >= 2 && var.gateway_count <= 5 && floor(var.gateway_count) == var.gateway_count
    error_message = "gateway_count: 2 to 5 (one keeps the virtual IP when another fails)."
  }
}

variable "gateway_flavor" {
  description = "Flavor of the gateways."
  type        = string
  default     = "m1.small"

  validation {
    condition     = length(trimspace(var.gateway_flavor)) > 0
    error_message = "gateway_flavor: a flavor name."
  }
}

variable "master_count" {
  description = "Control-plane nodes, each with a member of the stacked etcd."
  type        = number
  default     = 3

  validation {
    condition     = contains([3, 5], var.master_count)
    error_message = "master_count: 3 or 5 (an odd etcd quorum that survives the loss of one or two nodes)."
  }
}

variable "master_flavor" {
  description = "Flavor of the control-plane nodes."
  type        = string
  default     = "m1.large"

  validation {
    condition     = length(trimspace(var.master_flavor)) > 0
    error_message = "master_flavor: a flavor name."
  }
}

variable "gateway_volume_gb" {
  description = "Boot volume of a gateway, GB."
  type        = number
  default     = 20

  validation {
    condition     = var.gateway_volume_gb >= 10 && var.gateway_volume_gb <= 1000
    error_message = "gateway_volume_gb: 10 to 1000."
  }
}

variable "master_volume_gb" {
  description = "Boot volume of a control-plane node, GB (etcd lives there)."
  type        = number
  default     = 80

  validation {
    condition     = var.master_volume_gb >= 40 && var.master_volume_gb <= 1000
    error_message = "master_volume_gb: 40 to 1000."
  }
}

variable "volume_type" {
  description = "Cinder volume type of the boot volumes; null takes the cloud's default."
  type        = string
  default     = null
}

variable "worker_pools" {
  description = <<-EOT
    Worker node pools by name. Each: count, flavor, boot volume_gb, labels
    (besides node.pagestream.io/pool=<name>, which every node gets), taints
    ("key=value:Effect") and the policy of its server group. A pool of
    count 0 is declared but empty (the GPU pool by default).
  EOT
  type = map(object({
    count               = number
    flavor              = string
    volume_gb           = optional(number, 100)
    labels              = optional(map(string), {})
    taints              = optional(list(string), [])
    server_group_policy = optional(string, "soft-anti-affinity")
  }))
  default = {
    cpu = {
      count  = 3
      flavor = "c1.xlarge"
    }
    memory = {
      count  = 2
      flavor = "r1.xlarge"
    }
    gpu = {
      count  = 0
      flavor = "g1.xlarge"
      labels = { "node.pagestream.io/accelerator" = "nvidia" }
      taints = ["nvidia.com/gpu=present:NoSchedule"]
    }
  }

  validation {
    condition     = alltrue([for name, p in var.worker_pools : can(regex("^[a-z][a-z0-9]{0,9}$", name))])
    error_message = "worker_pools: pool names are 1 to 10 lowercase letters and digits, starting with a letter."
  }

  validation {
    condition     = alltrue([for p in var.worker_pools : p.count >= 0 && p.count <= 50 && floor(p.count) == p.count])
    error_message = "worker_pools: count is an integer from 0 to 50."
  }

  validation {
    condition     = sum(concat([0], [for p in var.worker_pools : p.count])) >= 3
    error_message = "worker_pools: at least 3 workers in all (Ceph's 3 mons and NATS's 3 servers each need their own node)."
  }

  validation {
    condition     = alltrue([for p in var.worker_pools : length(trimspace(p.flavor)) > 0 && p.volume_gb >= 20 && p.volume_gb <= 2000])
    error_message = "worker_pools: flavor is a flavor name, volume_gb 20 to 2000."
  }

  validation {
    condition = alltrue(flatten([for p in var.worker_pools : [
      for t in p.taints : can(regex("^[a-z0-9./-]+=[A-Za-z0-9._-]*:(NoSchedule|PreferNoSchedule|NoExecute)$", t))
    ]]))
    error_message = "worker_pools: each taint is key=value:Effect, Effect one of NoSchedule, PreferNoSchedule, NoExecute."
  }

  validation {
    condition     = alltrue([for p in var.worker_pools : contains(["anti-affinity", "soft-anti-affinity"], p.server_group_policy)])
    error_message = "worker_pools: server_group_policy is anti-affinity or soft-anti-affinity."
  }
}
