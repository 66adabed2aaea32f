"""The deploy's parts: rapl, docker_engine, scaphandre (hypervisors), opennebula and cloud
(which hypervisor is which OpenNebula host), prometheus, grafana; settings and preflight
check every host's settings first. docs/testing.md ("Where things are in the code") maps each to its files."""
