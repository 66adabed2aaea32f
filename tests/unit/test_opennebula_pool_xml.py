"""The HOST_POOL document read for what the deploy uses (tasks/opennebula/pool_xml.py) gives
the hosts pyone's generated bindings gave (tests/unit/pyone_reference.py), field for field,
template included: on the simulator's documents, on documents shaped like OpenNebula's own
schema samples (namespace, indentation, empty TEMPLATE, empty pool), on odd cases, and, as a
property, on any pool the simulator can serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from pyone.bindings import supbind

from tasks.opennebula.pool_xml import PoolDocumentError, hosts_from_pool_document
from tests.doubles.one_api_simulator import host_pool_xml
from tests.unit.pyone_reference import as_fields, pyone_bound_hosts

SAMPLE_POOL = Path(__file__).resolve().parents[1] / "doubles" / "one_hostpool_sample.yml"


def read(document: str):
    return hosts_from_pool_document(document.encode("utf-8"))


def assert_same_as_pyone(document: str, pyone_only: tuple = ()) -> list:
    """Our reading equals pyone's, field for field. `pyone_only`: template pairs pyone's
    reduction alone gives, the namespace declarations it took for template attributes
    (`@xmlns:xsi`) in a document that declares namespaces; none elsewhere."""
    ours = read(document)
    reference = as_fields(pyone_bound_hosts(document))
    for fields in reference:
        assert tuple(pair for pair in fields[-1] if pair[0].startswith("@")) in ((), pyone_only)
    assert as_fields(ours) == [
        (*fields[:-1], tuple(pair for pair in fields[-1] if not pair[0].startswith("@")))
        for fields in reference
    ]
    return ours


def test_the_simulators_sample_pool_reads_as_pyone_reads_it():
    hosts = sorted(
        assert_same_as_pyone(host_pool_xml(yaml.safe_load(SAMPLE_POOL.read_text()))),
        key=lambda h: h.id,
    )
    assert [(h.id, h.name, h.hostname, h.im_mad, h.state_name) for h in hosts] == [
        (3, "hv1", "hv1", "kvm", "MONITORED"),
        (5, "hv2", "hv2", "kvm", "MONITORED"),
        (8, "hv3", "hv3", "kvm", "MONITORED"),
        (11, "lxc-node1", "lxc-node1", "lxc", "DISABLED"),
    ]
    assert (
        hosts[0].template_value("IM_MAD") == "kvm" and hosts[0].template_value("ARCH") == "x86_64"
    )


def test_every_state_driver_and_a_host_never_monitored():
    hosts = sorted(
        assert_same_as_pyone(
            host_pool_xml(
                [
                    {"id": 0, "name": "hv1", "hostname": "hv1", "state": 2},
                    {"id": 4, "name": "hv2.example.org", "hostname": "hv2", "state": 4},
                    {"id": 9, "name": "hv4", "hostname": "hv4", "state": 8},
                    {"id": 12, "name": "lxc1", "hostname": "lxc1", "im_mad": "lxc", "state": 3},
                    {
                        "id": 15,
                        "name": "vcenter-cluster",
                        "im_mad": "vcenter",
                        "vm_mad": "vcenter",
                        "state": 0,
                    },
                    {"id": 16, "name": "odd", "state": 42},
                ]
            )
        ),
        key=lambda h: h.id,
    )
    assert [h.state_name for h in hosts] == [
        "MONITORED",
        "DISABLED",
        "OFFLINE",
        "ERROR",
        "INIT",
        "UNKNOWN(42)",
    ]
    assert hosts[4].hostname is None and hosts[4].im_mad == "vcenter"


# Shaped like OpenNebula's schema samples (share/doc/xsd/samples/host_pool): its namespace,
# indented elements, a host with an empty TEMPLATE; written for this test.
SCHEMA_SHAPED = """\
<HOST_POOL xmlns="http://opennebula.org/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xsi:schemaLocation="http://opennebula.org/XMLSchema ../../host_pool.xsd">
  <HOST>
    <ID>0</ID>
    <NAME>frontend-node</NAME>
    <STATE>2</STATE>
    <IM_MAD>kvm</IM_MAD>
    <VM_MAD>kvm</VM_MAD>
    <LAST_MON_TIME>1700000000</LAST_MON_TIME>
    <HOST_SHARE>
      <MAX_MEM>16777216</MAX_MEM>
      <MAX_CPU>800</MAX_CPU>
      <RUNNING_VMS>0</RUNNING_VMS>
    </HOST_SHARE>
    <TEMPLATE>
      <ARCH><![CDATA[x86_64]]></ARCH>
      <HOSTNAME><![CDATA[node-a.example.org]]></HOSTNAME>
      <PCI>
        <ADDRESS><![CDATA[0000:00:02:0]]></ADDRESS>
        <CLASS><![CDATA[0300]]></CLASS>
      </PCI>
      <RESERVED_CPU><![CDATA[]]></RESERVED_CPU>
      <SSH_PORT><![CDATA[ 2222 ]]></SSH_PORT>
    </TEMPLATE>
  </HOST>
  <HOST>
    <ID>1</ID>
    <NAME>never-monitored</NAME>
    <STATE>0</STATE>
    <IM_MAD>kvm</IM_MAD>
    <VM_MAD>kvm</VM_MAD>
    <TEMPLATE/>
  </HOST>
</HOST_POOL>
"""


def test_a_document_shaped_like_opennebulas_schema_samples():
    hosts = assert_same_as_pyone(
        SCHEMA_SHAPED, (("@xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),)
    )
    assert hosts[0].hostname == "node-a.example.org"
    assert hosts[0].template == (
        ("ARCH", "x86_64"),
        ("HOSTNAME", "node-a.example.org"),
        ("SSH_PORT", "2222"),
    )
    assert (hosts[1].hostname, hosts[1].template, hosts[1].state_name) == (None, (), "INIT")


def test_an_empty_pool_with_opennebulas_namespace():
    document = '<HOST_POOL xmlns="http://opennebula.org/XMLSchema"/>'
    assert assert_same_as_pyone(document) == []


def test_odd_hosts():
    """Repeated attributes (the first counts), vector attributes (left out), CDATA split
    around `]]>`, entities, whitespace, comments, no TEMPLATE at all, no HOSTNAME, no STATE,
    a field given twice (the last counts), an attribute named HOST inside a TEMPLATE."""
    document = (
        "<HOST_POOL>"
        "<HOST><ID>1</ID><NAME>a&amp;b &lt;odd&gt;</NAME><STATE>2</STATE><IM_MAD>kvm</IM_MAD>"
        "<TEMPLATE><!-- a comment --><HOSTNAME><![CDATA[ first ]]></HOSTNAME><HOSTNAME>second</HOSTNAME>"
        "<NOTE><![CDATA[x]]]]><![CDATA[>y]]></NOTE><HOST><![CDATA[not a host]]></HOST>"
        "<DISK><SIZE>1</SIZE></DISK><BLANK>   </BLANK><EMPTY/></TEMPLATE></HOST>"
        "<HOST><ID>2</ID><NAME>no-template</NAME><IM_MAD>kvm</IM_MAD></HOST>"
        "<HOST><ID>3</ID><NAME>no-hostname</NAME><STATE>4</STATE><IM_MAD>kvm</IM_MAD>"
        "<TEMPLATE><ARCH>x86_64</ARCH></TEMPLATE></HOST>"
        "<HOST><ID>4</ID><NAME>renamed</NAME><NAME>twice</NAME><STATE>2</STATE><STATE>8</STATE>"
        "<IM_MAD/><TEMPLATE><A>1</A></TEMPLATE><TEMPLATE><B>2</B></TEMPLATE></HOST>"
        "</HOST_POOL>"
    )
    hosts = assert_same_as_pyone(document)
    assert hosts[0].name == "a&b <odd>" and hosts[0].hostname == "first"
    assert dict(hosts[0].template) == {"HOSTNAME": "first", "NOTE": "x]]>y", "HOST": "not a host"}
    assert (hosts[1].hostname, hosts[1].template, hosts[1].state, hosts[1].state_name) == (
        None,
        (),
        -1,
        "UNKNOWN(-1)",
    )
    assert hosts[2].hostname is None and hosts[2].template == (("ARCH", "x86_64"),)
    assert (hosts[3].name, hosts[3].state, hosts[3].im_mad, hosts[3].template) == (
        "twice",
        8,
        "",
        (("B", "2"),),
    )


def test_a_repeated_vector_attribute_is_left_out_where_pyones_reduction_gave_its_text():
    """The one case the two readings differ on purpose: a vector attribute given more than
    once (PCI devices, say) is no single value; the earlier conversion turned the first one
    into the text of a Python dict."""
    document = (
        "<HOST_POOL><HOST><ID>1</ID><NAME>gpu</NAME><TEMPLATE>"
        "<PCI><ADDRESS>0000:00:02:0</ADDRESS></PCI><PCI><ADDRESS>0000:00:03:0</ADDRESS></PCI>"
        "<ARCH>x86_64</ARCH></TEMPLATE></HOST></HOST_POOL>"
    )
    [earlier] = pyone_bound_hosts(document)
    assert dict(earlier.template)["PCI"].startswith("{")
    [host] = read(document)
    assert host.template == (("ARCH", "x86_64"),)


# --------------------------------------------------------------------------- documents that are not pools


def test_the_reply_of_one_host_info_is_not_a_pool():
    document = host_pool_xml([{"id": 1, "name": "hv1"}])[len("<HOST_POOL>") : -len("</HOST_POOL>")]
    with pytest.raises(PoolDocumentError) as caught:
        read(document)
    assert (caught.value.kind, str(caught.value)) == ("not-a-pool", "HOST")
    with pytest.raises(PoolDocumentError, match="VM_POOL"):
        read("<VM_POOL><VM><ID>1</ID></VM></VM_POOL>")


@pytest.mark.parametrize(
    "document, kind, pyone_error",
    [
        ("<HOST_POOL><HOST><ID>1</ID>", "malformed", etree.XMLSyntaxError),
        (
            "<HOST_POOL><HOST><ID>one</ID><NAME>hv1</NAME></HOST></HOST_POOL>",
            "malformed",
            supbind.GDSParseError,
        ),
        (
            "<HOST_POOL><HOST><ID>1</ID><STATE>up</STATE></HOST></HOST_POOL>",
            "malformed",
            supbind.GDSParseError,
        ),
        ("<HOST_POOL><HOST><NAME>hv1</NAME></HOST></HOST_POOL>", "no-id", TypeError),
        ("<HOST_POOL><HOST><ID></ID><NAME>hv1</NAME></HOST></HOST_POOL>", "no-id", TypeError),
    ],
)
def test_a_broken_pool_fails_where_pyone_failed(document, kind, pyone_error):
    with pytest.raises(pyone_error):
        pyone_bound_hosts(document)
    with pytest.raises(PoolDocumentError) as caught:
        read(document)
    assert caught.value.kind == kind


# --------------------------------------------------------------------------- as a property

# Text an XML document can carry (XML 1.0 characters; a carriage return is read as a line feed
# by every XML parser, so both readings see the same).
xml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff").filter(
        lambda c: c in "\t\n" or c >= " "
    ),
    max_size=12,
)
attribute_name = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,8}\Z").filter(
    lambda name: name not in {"HOSTNAME"}
)
vector = st.dictionaries(st.from_regex(r"\A[A-Z][A-Z_]{0,5}\Z"), xml_text, min_size=1, max_size=3)
# A repeated attribute whose first value is a vector is the one case that differs on purpose (above).
attribute_value = st.one_of(
    xml_text,
    vector,
    st.lists(xml_text, min_size=2, max_size=3),
    st.tuples(xml_text, st.lists(st.one_of(xml_text, vector), min_size=1, max_size=2)).map(
        lambda pair: [pair[0], *pair[1]]
    ),
)
host = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=0, max_value=2**31),
        "name": xml_text,
        "state": st.integers(min_value=-1, max_value=12),
        "im_mad": st.sampled_from(["kvm", "lxc", "vcenter", ""]),
    },
    optional={
        "hostname": st.one_of(xml_text, st.lists(xml_text, min_size=2, max_size=3)),
        "template": st.dictionaries(attribute_name, attribute_value, max_size=4),
        "cluster_id": st.integers(min_value=-1, max_value=2**31),
        "cluster": xml_text,
        "vms": st.lists(st.integers(min_value=0, max_value=999), max_size=3),
    },
)


@settings(max_examples=300, deadline=None)
@given(pool=st.lists(host, max_size=6))
def test_any_pool_the_simulator_serves_reads_as_pyone_reads_it(pool):
    for entry in pool:
        if isinstance(entry.get("hostname"), list):  # the simulator's form of a repeated HOSTNAME
            entry.setdefault("template", {})["HOSTNAME"] = entry.pop("hostname")
    assert_same_as_pyone(host_pool_xml(pool))


def test_the_cluster_of_each_host():
    document = (
        "<HOST_POOL>"
        "<HOST><ID>1</ID><NAME>a</NAME><CLUSTER_ID>100</CLUSTER_ID><CLUSTER> paris </CLUSTER></HOST>"
        "<HOST><ID>2</ID><NAME>b</NAME><CLUSTER_ID>-1</CLUSTER_ID><CLUSTER></CLUSTER></HOST>"
        "<HOST><ID>3</ID><NAME>c</NAME></HOST>"
        "</HOST_POOL>"
    )
    hosts = assert_same_as_pyone(document)
    assert [(h.cluster_id, h.cluster) for h in hosts] == [
        (100, "paris"),
        (None, None),
        (None, None),
    ]


def test_a_cluster_id_that_is_no_number_is_no_cluster_where_pyone_refused_the_pool():
    document = (
        "<HOST_POOL><HOST><ID>1</ID><NAME>a</NAME><CLUSTER_ID>paris</CLUSTER_ID></HOST></HOST_POOL>"
    )
    with pytest.raises(supbind.GDSParseError):
        pyone_bound_hosts(document)
    [host] = read(document)
    assert (host.id, host.cluster_id) == (1, None)
