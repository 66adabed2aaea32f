"""The recording and alerting rules shipped in files/prometheus/, adapted to the job name."""

from __future__ import annotations

import re

from tasks.prometheus.job import SHIPPED_JOB_NAME

# The rules file shipped in files/prometheus/ selects the job by this matcher;
# the deploy writes the configured job name in its place.
RULES_JOB_MATCHER = 'job="{job_name}"'
_RULES_JOB_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def rules_for_job(rules_text: str, job_name: str = SHIPPED_JOB_NAME) -> str:
    """The shipped rules text with every ``job="scaphandre"`` selector naming ``job_name``.

    Job names are limited to letters, digits, '_', '.' and '-' so that the name
    sits safely in both a PromQL string and a plain YAML value. Rules text that
    does not select the default job at all (it would not be ours) is refused.
    """
    if not isinstance(job_name, str) or not _RULES_JOB_NAME.match(job_name):
        raise ValueError(
            f"job name {job_name!r} cannot be written into the rules file: "
            "use letters, digits, '_', '.' and '-' only"
        )
    default = RULES_JOB_MATCHER.format(job_name=SHIPPED_JOB_NAME)
    if default not in rules_text:
        raise ValueError(f"the rules text has no {default} selector to adapt")
    return rules_text.replace(default, RULES_JOB_MATCHER.format(job_name=job_name))


# How the shipped rules read a VM's size and a host's capacity (vCPUs out of the host's
# CPUs), and what takes their place for each accounting_size_basis, from OpenNebula's
# exporter: VCPU, CPU (a fraction of a physical CPU) or MEMORY (bytes) of each VM, and
# each host's TOTAL_CPU (100 per CPU) or TOTAL_MEM (bytes).
_SHIPPED_VM_SIZE = "max by (one_vm_id) (opennebula_vm_cpu_vcpus)"
_SHIPPED_HOST_CAPACITY = "max by (one_host_id) (opennebula_host_cpu_total_ratio) / 100"
SIZE_BASES: dict[str, tuple[str, str]] = {
    "vcpu": (_SHIPPED_VM_SIZE, _SHIPPED_HOST_CAPACITY),
    "cpu": ("max by (one_vm_id) (opennebula_vm_cpu_ratio)", _SHIPPED_HOST_CAPACITY),
    "memory": (
        "max by (one_vm_id) (opennebula_vm_mem_total_bytes)",
        "max by (one_host_id) (opennebula_host_mem_total_bytes)",
    ),
}


def rules_for_size_basis(rules_text: str, basis: str) -> str:
    """The rules text with the VM sizes and host capacities of `basis` (a key of SIZE_BASES)."""
    if basis not in SIZE_BASES:
        raise ValueError(f"size basis {basis!r} is not one of {', '.join(SIZE_BASES)}")
    for shipped, chosen in zip(SIZE_BASES["vcpu"], SIZE_BASES[basis], strict=True):
        if rules_text.count(shipped) != 1:
            raise ValueError(f"the rules text does not read {shipped!r} exactly once")
        rules_text = rules_text.replace(shipped, chosen)
    return rules_text


def render_rules(rules_text: str, job_name: str, size_basis: str, carbon_rules: str = "") -> str:
    """The rules file a Prometheus server gets: the shipped rules for its job name and
    size basis, then the carbon intensity group (tasks.accounting.carbon) when there is one.

    The group is appended as text: the shipped file ends in its list of groups.
    """
    rendered = rules_for_size_basis(rules_for_job(rules_text, job_name), size_basis)
    if carbon_rules:
        rendered = rendered.rstrip("\n") + "\n" + carbon_rules
    return rendered
