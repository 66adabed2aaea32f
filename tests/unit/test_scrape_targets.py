"""Which hypervisors the job lists when some cannot be looked up in this run."""

from tasks.prometheus_config import ScrapeTarget
from tasks.scrape_targets import assemble_targets


def target(address, one_id, name):
    return ScrapeTarget(address=address, one_host_id=one_id, host_name=name)


def test_resolved_hosts_are_all_listed():
    resolved = {"hv1": target("hv1:8080", 7, "hv1"), "hv2": target("hv2:8080", 3, "hv2")}
    targets, warnings = assemble_targets(resolved, {}, [])
    assert sorted(t.one_host_id for t in targets) == [3, 7]
    assert warnings == []


def test_a_host_outside_the_run_keeps_its_previous_entry():
    previous = [target("hv1:8080", 7, "hv1"), target("hv9:8080", 42, "node-nine")]
    targets, warnings = assemble_targets({"hv1": target("hv1:8080", 7, "hv1")}, {"hv9": "hv9:8080"}, previous)
    assert target("hv9:8080", 42, "node-nine") in targets
    assert warnings == []


def test_a_host_never_seen_is_left_out_with_a_warning_naming_the_fix():
    targets, warnings = assemble_targets({}, {"hv9": "hv9:8080"}, [target("hv1:8080", 7, "hv1")])
    assert targets == []
    assert len(warnings) == 1 and "hv9" in warnings[0] and "one_host_id" in warnings[0]


def test_previous_entries_of_hosts_removed_from_the_inventory_are_dropped():
    previous = [target("old:8080", 1, "old")]
    targets, _ = assemble_targets({"hv1": target("hv1:8080", 7, "hv1")}, {}, previous)
    assert [t.address for t in targets] == ["hv1:8080"]
