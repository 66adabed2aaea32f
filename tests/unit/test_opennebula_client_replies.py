"""What fetch_host_pool makes of each kind of answer to its one call (tasks/opennebula/client.py),
without a network: a stand-in for requests' transport adapter answers with the XML-RPC reply
chosen. oned's failures keep pyone's meaning; a reply that is XML-RPC but no host pool is
named as such; a large escaped pool is decoded exactly."""

from __future__ import annotations

import xmlrpc.client

import pytest
import requests

from tasks.opennebula.client import OneAuthError, OneEndpoint, OneProtocolError, fetch_host_pool
from tasks.opennebula.pool import OpenNebulaError
from tests.doubles.one_api_simulator import host_pool_xml, host_xml
from tests.unit.pyone_reference import as_fields, pyone_bound_hosts

URL = "http://one.example.test:2633/RPC2"
PASSWORD = "Replies-Pa55"


def answered_with(monkeypatch, *params) -> list[bytes]:
    """Every request gets the XML-RPC reply carrying `params`; returns the request bodies seen."""
    seen: list[bytes] = []

    def send(adapter, request, **kwargs):
        seen.append(request.body)
        response = requests.Response()
        response.status_code = 200
        response._content = xmlrpc.client.dumps(
            params, methodresponse=True, allow_none=True
        ).encode()
        response.url, response.request = request.url, request
        return response

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return seen


def fetch():
    return fetch_host_pool(
        OneEndpoint(url=URL, session=f"oneadmin:{PASSWORD}", timeout=5, auth_source="test")
    )


def test_the_one_call_carries_the_session_and_reads_the_pool(monkeypatch):
    pool = [{"id": 3, "name": "hv1", "hostname": "hv1"}, {"id": 5, "name": "hv2"}]
    seen = answered_with(monkeypatch, [True, host_pool_xml(pool), 0, -1, 0])
    assert sorted((h.id, h.name, h.hostname) for h in fetch()) == [
        (3, "hv1", "hv1"),
        (5, "hv2", None),
    ]
    method, params = xmlrpc.client.loads(seen[0])[::-1]
    assert (method, params) == ("one.hostpool.info", (f"oneadmin:{PASSWORD}",))


def test_a_large_pool_escaped_in_the_reply_is_decoded_exactly(monkeypatch):
    """The pool travels as one string escaped for XML: every escape decoded, every host read."""
    pool = [
        {
            "id": n,
            "name": f"node{n}&<'\">.example",
            "hostname": f"node{n}",
            "template": {"NOTE": "a]]>b & <c>"},
        }
        for n in range(3000)
    ]
    document = host_pool_xml(pool)
    answered_with(monkeypatch, [True, document, 0, -1, 0])
    hosts = fetch()
    assert len(hosts) == 3000 and {h.id: h for h in hosts}[7].name == "node7&<'\">.example"
    assert as_fields(hosts) == as_fields(pyone_bound_hosts(document))


@pytest.mark.parametrize(
    "code, error, words",
    [
        (0x0100, OneAuthError, "refused the credentials of user 'oneadmin'"),
        (0x0200, OneAuthError, "did not allow user 'oneadmin'"),
        (
            0x0400,
            OpenNebulaError,
            "answered one.hostpool.info with an error: [one.hostpool.info] nope",
        ),
        (
            0x2000,
            OpenNebulaError,
            "answered one.hostpool.info with an error: [one.hostpool.info] nope",
        ),
    ],
)
def test_oneds_failures_keep_their_meaning(monkeypatch, code, error, words):
    answered_with(monkeypatch, [False, "[one.hostpool.info] nope", code, -1, 0])
    with pytest.raises(error) as caught:
        fetch()
    assert words in str(caught.value) and URL in str(caught.value)


@pytest.mark.parametrize(
    "reply, words",
    [
        (
            [True, host_xml({"id": 1, "name": "hv1"}), 0],
            "answered one.hostpool.info with HOST, not a HOST_POOL",
        ),
        ([True, "<VM_POOL/>", 0], "answered one.hostpool.info with VM_POOL, not a HOST_POOL"),
        ([True, "all fine", 0], "answered one.hostpool.info with str, not a HOST_POOL"),
        ([True, 42, 0], "answered one.hostpool.info with int, not a HOST_POOL"),
        (
            [True, "<HOST_POOL><HOST><ID>1</ID>", 0],
            "returned a host pool that is not valid HOST_POOL XML",
        ),
        (
            [True, "<HOST_POOL><HOST><ID>x</ID></HOST></HOST_POOL>", 0],
            "returned a host pool that is not valid HOST_POOL XML",
        ),
        ({"faultless": "struct"}, "sent a reply that is not OpenNebula XML-RPC"),
        ([True], "sent a reply that is not OpenNebula XML-RPC"),
    ],
)
def test_a_reply_that_is_no_host_pool_is_named_as_such(monkeypatch, reply, words):
    answered_with(monkeypatch, reply)
    with pytest.raises(OneProtocolError) as caught:
        fetch()
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_host_without_an_id_is_named(monkeypatch):
    answered_with(monkeypatch, [True, "<HOST_POOL><HOST><NAME>hv1</NAME></HOST></HOST_POOL>", 0])
    with pytest.raises(OpenNebulaError, match="returned a HOST_POOL entry without a numeric ID"):
        fetch()


def test_a_root_element_named_like_the_password_is_not_shown(monkeypatch):
    answered_with(monkeypatch, [True, f"<{PASSWORD}/>", 0])
    with pytest.raises(OneProtocolError) as caught:
        fetch()
    assert PASSWORD not in str(
        caught.value
    ) and "answered one.hostpool.info with ***, not a HOST_POOL" in str(caught.value)
