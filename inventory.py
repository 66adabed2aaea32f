"""Which machines the deploy touches.

Two groups: `hypervisors` (OpenNebula KVM hosts: they get RAPL, Docker and
Scaphandre) and `prometheus` (servers that scrape them; leave it empty to get a
job to paste instead). Per-host settings go in the host's dict; every setting
and its default is in docs/settings.md.

For your cloud, replace both lists, for example:

    hypervisors = [
        "kvm1.example.org",
        ("kvm2.example.org", {"one_host_name": "kvm2"}),   # registered under another NAME
        ("192.0.2.13", {"one_host_id": 13, "scaphandre_scrape_host": "kvm3.example.org"}),
    ]
    prometheus = ["one-frontend.example.org"]

Until then it targets the local simulated cloud that `bash scripts/demo.sh`
starts: three simulated hypervisors and a Prometheus server in containers on
this machine, reached over SSH on 127.0.0.1, an OpenNebula API simulator on
127.0.0.1:26330, and a stand-in exporter image in place of hubblo/scaphandre.
"""

from pathlib import Path

_SIMULATED = Path(__file__).resolve().parent / ".testbed" / "demo"
_SSH = {
    "ssh_hostname": "127.0.0.1",
    "ssh_user": "root",
    "ssh_key": str(_SIMULATED / "id_ed25519"),
    "ssh_strict_host_key_checking": "off",
    "ssh_known_hosts_file": "/dev/null",
}

# OpenNebula settings are read on this machine, never sent to a host.
_OPENNEBULA = {
    "one_xmlrpc": "http://127.0.0.1:26330/RPC2",
    "one_auth_file": str(_SIMULATED / "one_auth"),
}

hypervisors = (
    [
        ("hv1", {**_SSH, "ssh_port": 2221}),
        ("hv2", {**_SSH, "ssh_port": 2222}),
        ("hv3", {**_SSH, "ssh_port": 2223}),
    ],
    {
        **_OPENNEBULA,
        # The simulated hosts cannot pull from a registry; their engine has the stand-in preloaded.
        "scaphandre_image": "scaphandre-test-double:1.0.2",
    },
)

prometheus = ([("prom1", {**_SSH, "ssh_port": 2271})], _OPENNEBULA)
