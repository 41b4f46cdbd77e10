# Terraform and the one provider this configuration uses, pinned. The
# provider reads its credentials from clouds.yaml (entry var.cloud) or the
# OS_* environment, never from this code.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    openstack = {
      source  = "terraform-provider-openstack/openstack"
      version = "= 3.0.0"
    }
  }
}

provider "openstack" {
  cloud = var.cloud
}
