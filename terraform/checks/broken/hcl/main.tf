# Broken on purpose: terraform/checks/run's "hcl rejects" must report each
# of these (hcl_check.py).
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    # not an exact release
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "~> 3.0"
    }
  }
}

variable "master_count" {
  description = "no validation block"
  type        = number
  default     = 3
}

# declared, never used
variable "unused_flavor" {
  description = "never referenced"
  type        = string
  default     = "m1.small"
  validation {
    condition     = length(var.unused_flavor) > 0
    error_message = "empty"
  }
}

resource "openstack_networking_network_v2" "private" {
  name = "n-${var.master_count}"
}

resource "openstack_networking_subnet_v2" "private" {
  # a misspelt resource name and an undeclared variable
  network_id = openstack_networking_network_v2.privat.id
  cidr       = var.subnet_cidr
}

resource "openstack_compute_instance_v2" "node" {
  name      = data.openstack_images_image_v2.os.name
  user_data = templatefile("${path.module}/cloud-init/node.yaml.tftpl", { hostname = "x", extra = 1 })
}

resource "random_id" "unpinned" {
  byte_length = 4
}
