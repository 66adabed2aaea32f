"""OpenNebula's HOST_POOL document (the body of `one.hostpool.info`), read for what the deploy uses.

Each HOST gives its ID, NAME, STATE, IM_MAD, CLUSTER_ID, CLUSTER and the single-valued
attributes of its TEMPLATE (HOSTNAME among them); nothing else of the document becomes a
Python object.
pyone's generated bindings build an object for every field of every host (HOST_SHARE,
NUMA nodes, monitoring, VM IDs): seconds of CPU and hundreds of MB for a cloud of
10,000 hosts, where this reads the same document in a fraction of a second, one host at
a time, and forgets each host's elements once read.

The values are the ones pyone's bindings give for the same document (checked against
them in tests/unit/test_opennebula_pool_xml.py): a repeated template attribute gives its
first value; a vector attribute (one holding elements) is no single value and is left out;
a CLUSTER_ID that is not a non-negative integer is no cluster (pyone's binding refused the
whole pool for it, though the deploy only needs it for a carbon intensity per cluster).
Elements may carry OpenNebula's XML namespace, as its schema samples do.

Pure: bytes in, hosts out.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from tasks.opennebula.pool import HOST_STATE_NAMES, HostPool, OneHost

if TYPE_CHECKING:
    from lxml.etree import _Element


class PoolDocumentError(ValueError):
    """The document is not a HOST_POOL the deploy can read; `kind` says how."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind  # "not-a-pool" (detail: its root element), "malformed" or "no-id"


def hosts_from_pool_document(document: bytes) -> HostPool:
    """Every HOST of a HOST_POOL document, in document order.

    Raises PoolDocumentError: "not-a-pool" when the root element is not HOST_POOL (its
    name is the detail), "malformed" for XML that does not parse or an ID/STATE that is
    not an integer, "no-id" for a HOST without an ID.
    """
    from lxml import etree  # pyone's own XML library; imported here so the pure pool needs neither

    # Only HOST elements are reported; comments and processing instructions are not kept.
    events = etree.iterparse(
        io.BytesIO(document), events=("end",), tag="{*}HOST", remove_comments=True, remove_pis=True
    )
    hosts: list[OneHost] = []
    try:
        for _, element in events:
            parent = element.getparent()
            if parent is None or parent.getparent() is not None:
                continue  # the root itself (not a pool), or an attribute named HOST inside a host's TEMPLATE
            hosts.append(_host(element))
            # This host is read: free its elements and those of the hosts before it, so the
            # whole document never stands in memory as a tree.
            element.clear(keep_tail=True)
            while element.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as error:
        raise PoolDocumentError("malformed", f"not well-formed XML ({error.msg})") from None
    root = _local_name(events.root.tag)
    if root != "HOST_POOL":
        raise PoolDocumentError("not-a-pool", root)
    return HostPool(hosts)


def _local_name(tag: str) -> str:
    """`{http://opennebula.org/XMLSchema}HOST` -> `HOST`."""
    return tag if tag[0] != "{" else tag.rpartition("}")[2]


def _host(element: _Element) -> OneHost:
    """One HOST element as a OneHost; a field given twice counts by its last element, as in pyone."""
    identifier = state = cluster_id = None
    name = im_mad = cluster = ""
    template = None
    for child in element:
        # A comment's or processing instruction's tag is a function, not a name.
        element_tag: object = child.tag
        if not isinstance(element_tag, str):
            continue
        tag = _local_name(element_tag)
        if tag == "ID":
            identifier = child.text or identifier  # an empty ID element leaves the ID unset
        elif tag == "NAME":
            name = child.text or ""
        elif tag == "STATE":
            state = child.text or state
        elif tag == "IM_MAD":
            im_mad = child.text or ""
        elif tag == "TEMPLATE":
            template = child
        elif tag == "CLUSTER_ID":
            cluster_id = child.text or cluster_id
        elif tag == "CLUSTER":
            cluster = child.text or ""
    if identifier is None:
        raise PoolDocumentError("no-id", f"host {name!r} has no ID")
    state_number = _integer(state, "STATE", name) if state is not None else -1
    attributes = _single_valued(template) if template is not None else ()
    return OneHost(
        id=_integer(identifier, "ID", name),
        name=name,
        hostname=dict(attributes).get("HOSTNAME"),
        im_mad=im_mad,
        state=state_number,
        state_name=HOST_STATE_NAMES.get(state_number, f"UNKNOWN({state_number})"),
        template=attributes,
        cluster_id=_cluster_id(cluster_id),
        cluster=cluster.strip() or None,
    )


def _cluster_id(text: str | None) -> int | None:
    """A cluster ID, or None for none (absent, negative: not in a cluster, or not a number)."""
    try:
        number = int(text) if text is not None else -1
    except ValueError:
        return None
    return number if number >= 0 else None


def _integer(text: str, field: str, host_name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PoolDocumentError(
            "malformed", f"{field} of host {host_name!r} is not an integer"
        ) from None


def _single_valued(template: _Element) -> tuple[tuple[str, str], ...]:
    """A TEMPLATE's single-valued attributes as sorted (NAME, stripped value) pairs.

    An attribute given several times counts by its first occurrence; an attribute that
    holds elements (a vector) or XML attributes is not single-valued; an empty value is left out.
    """
    first: dict[str, str | None] = {}
    for attribute in template:
        attribute_tag: object = attribute.tag  # a function for a comment
        if not isinstance(attribute_tag, str):
            continue
        key = _local_name(attribute_tag)
        if key in first:
            continue
        if len(attribute) or attribute.attrib:
            first[key] = None
            continue
        first[key] = (attribute.text or "").strip() or None
    return tuple(sorted((key, value) for key, value in first.items() if value is not None))
