"""The end-to-end test bed (simulated hypervisors, a Prometheus host); see README.md."""
