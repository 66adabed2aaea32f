"""Properties of the host matching (tasks/opennebula/matching.py), checked with Hypothesis:
the closest-names hint gives exactly difflib's answer at a fraction of its work, and no
pool or query makes matching raise anything but HostMatchError."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.opennebula import matching
from tasks.opennebula.matching import (
    HostMatchError,
    HostQuery,
    close_matches,
    match_host,
    resolve_hypervisors,
)
from tasks.opennebula.pool import HostPool, OneHost

# Host names as clouds write them: letters, digits, dots, dashes, the odd capital or
# underscore, IP addresses, and now and then an empty or unusual NAME.
label = st.text(alphabet="abcdefghknrv0123456789-", min_size=1, max_size=8)
host_name = st.one_of(
    st.builds(".".join, st.lists(label, min_size=1, max_size=3)),
    st.builds(lambda a, b: f"{a}.{b}", st.ip_addresses(v=4).map(str), st.just("x")).map(
        lambda s: s.split(".x")[0]
    ),
    st.ip_addresses().map(str),
    st.text(max_size=12),
    st.sampled_from(["", "KVM1", "kvm1", "Kvm1.Example.Org", "node_7"]),
)


# --------------------------------------------------------------------------- closest names


@settings(max_examples=400, deadline=None)
@given(
    word=host_name,
    candidates=st.lists(host_name, max_size=25, unique=True),
    n=st.integers(min_value=1, max_value=5),
    cutoff=st.sampled_from([0.0, 0.3, 0.4, 0.6, 0.8, 1.0]),
)
def test_close_matches_gives_exactly_difflibs_answer(word, candidates, n, cutoff):
    assert close_matches(word, candidates, n, cutoff) == difflib.get_close_matches(
        word, candidates, n, cutoff
    )


@settings(max_examples=100, deadline=None)
@given(
    rack=st.integers(0, 60),
    node=st.integers(0, 130),
    dc=st.integers(1, 5),
    typo=st.sampled_from(["", "x", "-"]),
)
def test_close_matches_agrees_with_difflib_on_a_patterned_pool(rack, node, dc, typo):
    pool = [
        f"kvm-{r:02d}-{n:03d}.dc{d}.example.org"
        for d in (1, 2)
        for r in range(0, 40, 3)
        for n in range(0, 120, 7)
    ]
    word = f"kvm-{rack:02d}-{node}{typo}.dc{dc}.example.org"
    assert close_matches(word, pool, 3, 0.4) == difflib.get_close_matches(word, pool, 3, 0.4)


class CountingMatcher(difflib.SequenceMatcher):
    ratios = 0

    def ratio(self):
        CountingMatcher.ratios += 1
        return super().ratio()


def test_a_miss_in_a_20000_host_pool_computes_few_full_ratios(monkeypatch):
    """The cost of a miss is the full ratio (longest matching blocks) per candidate; difflib
    computes one for every name that passes its quick checks, here all 20,000."""
    pool = HostPool(
        OneHost(
            id=i,
            name=f"kvm-{i // 100:03d}-{i % 100:02d}.dc1.example.org",
            hostname=None,
            im_mad="kvm",
            state=2,
            state_name="MONITORED",
        )
        for i in range(20_000)
    )
    monkeypatch.setattr(matching, "SequenceMatcher", CountingMatcher)
    CountingMatcher.ratios = 0
    with pytest.raises(HostMatchError) as caught:
        match_host(pool, inventory_name="kvm-017-5.dc1.example.org")
    assert [name[:8] for name in caught.value.closest_names] == ["kvm-017-"] * 3
    assert CountingMatcher.ratios <= 1_000, (
        f"{CountingMatcher.ratios} full ratios for one miss (at most 5% of the pool)"
    )

    monkeypatch.setattr(difflib, "SequenceMatcher", CountingMatcher)
    CountingMatcher.ratios = 0
    names = [host.name.lower() for host in pool]
    assert difflib.get_close_matches("kvm-017-5.dc1.example.org", names, 3, 0.4) == list(
        caught.value.closest_names
    )
    assert CountingMatcher.ratios > 10_000, (
        "plain difflib: one full ratio per name that passes its quick checks"
    )


# --------------------------------------------------------------------------- nothing but HostMatchError


def hosts(names: list[str], hostnames: list[str | None]) -> list[OneHost]:
    return [
        OneHost(
            id=i,
            name=name,
            hostname=hostnames[i % len(hostnames)] if hostnames else None,
            im_mad="kvm",
            state=2,
            state_name="MONITORED",
        )
        for i, name in enumerate(names)
    ]


host_id = st.one_of(
    st.none(), st.integers(min_value=-2, max_value=40), st.sampled_from(["7", "kvm1", "", " 3 "])
)


@settings(max_examples=400, deadline=None)
@given(
    names=st.lists(host_name, max_size=12),
    hostnames=st.lists(st.one_of(st.none(), host_name), max_size=5),
    indexed=st.booleans(),
    query=host_name,
    one_host_id=host_id,
    one_host_name=st.one_of(st.none(), host_name),
    node_hostname=st.one_of(st.none(), host_name),
)
def test_match_host_returns_a_pool_host_or_raises_host_match_error(
    names, hostnames, indexed, query, one_host_id, one_host_name, node_hostname
):
    pool = hosts(names, hostnames)
    pool = HostPool(pool) if indexed else pool
    try:
        found = match_host(
            pool,
            inventory_name=query,
            one_host_id=one_host_id,
            one_host_name=one_host_name,
            node_hostname=node_hostname,
        )
    except HostMatchError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert found in pool


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(host_name, max_size=12),
    hostnames=st.lists(st.one_of(st.none(), host_name), max_size=5),
    queries=st.lists(
        st.tuples(host_name, host_id, st.one_of(st.none(), host_name)),
        max_size=6,
        unique_by=lambda query: query[0],
    ),  # inventory names are unique
    node_hostnames=st.dictionaries(host_name, st.one_of(st.none(), host_name), max_size=4),
)
def test_resolve_hypervisors_answers_every_query_and_never_raises(
    names, hostnames, queries, node_hostnames
):
    pool = HostPool(hosts(names, hostnames))
    asked = [
        HostQuery(name, one_id if one_id is None or isinstance(one_id, int) else None, one_name)
        for name, one_id, one_name in queries
    ]
    matches, errors = resolve_hypervisors(pool, asked, node_hostnames.get)
    assert set(matches) | set(errors) == {query.inventory_name for query in asked}
    assert not set(matches) & set(errors)
    assert all(isinstance(error, HostMatchError) for error in errors.values())
    ids = [host.id for host in matches.values()]
    assert len(ids) == len(set(ids)), "two inventory hosts never share one OpenNebula host"


def _parses_as_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=20),
        st.ip_addresses().map(str),
        st.ip_addresses(v=6).map(lambda address: f"{address}%eth0"),
        st.from_regex(r"\A[0-9a-f:.]{1,20}\Z"),
    )
)
def test_is_ip_answers_as_the_standard_library_does(text):
    """is_ip skips the parse for text that cannot be an address: same answer as parsing it."""
    from tasks.opennebula.pool import is_ip

    assert is_ip(text) == _parses_as_ip(text)
