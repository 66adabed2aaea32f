"""Every setting of the deploy, with its default, in one place.

Override any of them for a group (group_data/<group>.py, or the group's data in
inventory.py) or for a single host (its data in inventory.py). README's
"Settings" table documents each one.
"""

# --- Scaphandre, on the `hypervisors` group -----------------------------------
# Pinned: a moving tag would recreate every container whenever upstream pushes.
scaphandre_image = "hubblo/scaphandre:1.0.2"
scaphandre_container_name = "scaphandre"
scaphandre_port = 8080
scaphandre_listen_address = "0.0.0.0"
scaphandre_qemu = True  # per-VM power (`--qemu`)
scaphandre_containers = True  # `--containers`, mounts the Docker socket
# Upstream's choice: AppArmor/SELinux otherwise deny the RAPL counters and ptrace.
# False runs it with SYS_PTRACE and AppArmor/SELinux confinement lifted instead.
scaphandre_privileged = True
scaphandre_restart_policy = "unless-stopped"
scaphandre_extra_docker_args = []
# Sites whose hypervisors reach no registry: a `docker save` archive of scaphandre_image on the
# machine running pyinfra, uploaded and loaded only where the image is missing.
scaphandre_image_archive = None
# A private registry (named in scaphandre_image) that needs a login: the password is read from
# this file on the machine running pyinfra and given to `docker login` on the host via stdin.
scaphandre_registry_username = None
scaphandre_registry_password_file = None
scaphandre_metrics_timeout_s = 60
# The address Prometheus scrapes; None means the inventory name of the host.
scaphandre_scrape_host = None

# --- RAPL ----------------------------------------------------------------------
# None: chosen from the CPU vendor and the kernel version.
rapl_modules = None

# --- Docker engine ---------------------------------------------------------------
docker_install_source = "distro"  # "distro" (docker.io) or "docker-ce"
# Base URL of Docker's package repository (the install guides' own), for docker-ce and the RHEL family;
# /debian, /ubuntu, /centos or /rhel is added per distribution. A mirror: its base URL, without
# credentials (apt: a file in /etc/apt/auth.conf.d/; dnf: the repository's username/password options).
docker_ce_repo_url = "https://download.docker.com/linux"

# remove.py only: also remove the Docker engine (other containers may need it).
remove_docker_engine = False

# --- One run at a time per host (hypervisors and Prometheus servers) -------------------
# A run that finds another run changing a host waits this long for it, then fails that host
# naming the lock and who holds it.
host_lock_timeout_s = 60

# --- OpenNebula (read from the machine running pyinfra, never sent to a host) -----
one_xmlrpc = None  # None: $ONE_XMLRPC, else http://localhost:2633/RPC2
one_auth_file = None  # None: $ONE_AUTH, ~/.one/one_auth, /var/lib/one/.one/one_auth
one_xmlrpc_timeout = None  # seconds for the whole call; None: $ONE_XMLRPC_TIMEOUT, else 30
# https endpoints: PEM file of the CA that signed oned's certificate; None: $REQUESTS_CA_BUNDLE,
# else the CA bundle Python's requests ships.
one_xmlrpc_ca_file = None
one_host_id = None  # per host: skip matching and use this OpenNebula host ID
one_host_name = None  # per host: the OpenNebula host NAME when it differs from the inventory name
# When the API cannot be reached, read the ID from /var/tmp/one/im/status_kvm_<ID>.db.
one_monitor_db_fallback = False

# --- Discovery: `hypervisors = opennebula_hypervisors()` in inventory.py (off by default) ---
# Patterns filled per OpenNebula host with {name}, {hostname}, {id} or {template[ATTRIBUTE]}.
discovery_ssh_address = "{name}"
discovery_ssh_port = None  # None: pyinfra's default (22)
discovery_ssh_user = None
discovery_scrape_host = "{name}"
discovery_host_data = {}  # extra data for every discovered host (ssh_key, ...)

# --- Prometheus, on the `prometheus` group ---------------------------------------
prometheus_job_name = "scaphandre"
prometheus_scrape_interval = None  # None: the server's global scrape_interval
# With several `prometheus` hosts: "replicate" (each scrapes every hypervisor) or
# "shard" (each scrapes its share, by Prometheus' hashmod on the target address).
prometheus_scrape_mode = "replicate"
# First existing config wins, with the service that reads it.
prometheus_candidates = [
    ("/etc/one/prometheus/prometheus.yml", "opennebula-prometheus"),
    ("/etc/prometheus/prometheus.yml", "prometheus"),
]
prometheus_config_file = None  # set both of these to skip detection
prometheus_service = None
prometheus_targets_file = None  # None: scaphandre_targets.yml beside prometheus.yml
# The version and promtool come from the binary the service's unit runs (its ExecStart) and the
# promtool beside it; these lists serve only when the unit names no Prometheus binary (no systemd,
# a wrapper script) or no promtool stands beside it. First existing wins.
prometheus_binaries = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
promtool_binaries = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
# Where the verification suite asks Prometheus (from the Prometheus host itself).
prometheus_api_url = "http://localhost:9090"
# Without a `prometheus` host the job is written here (on the machine running pyinfra).
prometheus_snippet_file = "scaphandre-prometheus-job.yml"
prometheus_snippet_major_version = 2  # 3 adds the fallback_scrape_protocol Prometheus 3 needs
# After a reload, how long to wait for Prometheus itself to report the new configuration loaded
# (its own reload metrics, read on the server); 0 reloads without waiting (nothing confirmed).
prometheus_reload_timeout_s = 60

# --- Prometheus rules, on the `prometheus` group -------------------------------------
# Recording and alerting rules (files/prometheus/scaphandre_rules.yml), listed under rule_files.
prometheus_rules = True
prometheus_rules_file = None  # None: scaphandre_rules.yml beside prometheus.yml

# --- Energy accounting (the attribution and emissions rules, the report) -----------------
# On `prometheus` hosts: what a VM's share of its host's constant power is proportional to,
# as OpenNebula's exporter reports it: "vcpu" (VCPU), "cpu" (CPU) or "memory" (MEMORY).
accounting_size_basis = "vcpu"
# On hypervisors (host or group data): gCO2e per kWh where the host draws its power: a number,
# or the name of a Prometheus series you already have (e.g. 'grid_intensity{zone="FR"}', an
# hourly feed). None: no emissions for that host (nothing about carbon is recorded or shown).
carbon_intensity = None
# The same per OpenNebula cluster (its NAME, or its ID as a number), for hypervisors whose
# carbon_intensity is None, e.g. {"paris": 56, 104: 'grid_intensity{zone="DE"}'}.
carbon_intensity_clusters = {}
# On `prometheus` hosts: how long a value of an intensity series counts after its sample.
carbon_intensity_max_age = "90m"

# --- Grafana, on the `grafana` group (optional) ------------------------------------
grafana_provisioning_dir = "/etc/grafana/provisioning/dashboards"  # the dashboard provider goes here
grafana_dashboards_dir = "/var/lib/grafana/dashboards/opennebula"  # the dashboard JSON goes here
grafana_dashboard_folder = "OpenNebula"  # Grafana folder the dashboard appears in
grafana_service = "grafana-server"  # restarted (if running) only when the provider file is new or changed

# --- Energy back into OpenNebula, on the `prometheus` group (off by default) ----------
# A timer on the Prometheus server writes each host's and VM's power and 24 h energy into
# their OpenNebula templates (SCAPHANDRE_POWER_W, ...) for SCHED_RANK / SCHED_REQUIREMENTS.
# Enable it on one Prometheus server (that host's data): each enabled server writes.
energy_sync = False
energy_sync_interval_s = 300  # the timer's period and the power averaging window (60-86400)
# Values with no power sample for this long are removed (at least twice the interval): the
# scheduler cannot tell an old value from a current one.
energy_sync_max_age_s = 900
# Figures above these are refused (not written, the object's values removed), as are
# negative ones: RAPL counts CPU packages and their memory, 4000 W for 8 sockets of today's
# largest (500 W) CPUs; a VM spread over 4 of them, 2000 W. A RAPL counter overflow gives
# Scaphandre figures like 1e20 W.
energy_sync_host_max_power_w = 5000
energy_sync_vm_max_power_w = 2000
energy_sync_prometheus_url = "http://127.0.0.1:9090"  # Prometheus' API, as seen from that server
energy_sync_one_xmlrpc = "http://localhost:2633/RPC2"  # oned, as seen from that server (not one_xmlrpc)
# A file already on that server (OpenNebula's own); the deploy never copies credentials there.
energy_sync_one_auth_file = "/var/lib/one/.one/one_auth"
# A value is rewritten only when it moved by more than the larger of the absolute threshold
# and threshold_percent of the stored value, or when it is older than refresh_s.
energy_sync_threshold_percent = 2
energy_sync_threshold_watts = 1
energy_sync_threshold_kwh = 0.01
energy_sync_refresh_s = 3600
energy_sync_timeout_s = 30  # give up on Prometheus or oned after this many seconds
