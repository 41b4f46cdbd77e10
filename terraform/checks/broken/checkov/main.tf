# Broken on purpose: terraform/checks/run's "checkov rejects" must report
# the credentials in the provider block (CKV_OPENSTACK_1) and SSH open to
# the whole internet (CKV_OPENSTACK_2).
provider "openstack" {
  auth_url    = "https://keystone.example.invalid:5000/v3"
  user_name   = "admin"
  password    = "hunter2-not-a-real-one"
  tenant_name = "pagestream"
}

resource "openstack_networking_secgroup_v2" "gateway" {
  name = "gateway"
}

resource "openstack_networking_secgroup_rule_v2" "ssh_world" {
  security_group_id = openstack_networking_secgroup_v2.gateway.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = "0.0.0.0/0"
}
