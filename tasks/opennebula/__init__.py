"""OpenNebula: the host pool from its XML-RPC API, once per run.

client.py talks to the API (pyone), pool.py holds what it returns, matching.py
finds each hypervisor in it, discovery.py builds the inventory from it.
"""

from __future__ import annotations

from pyinfra.api.exceptions import PyinfraError

from tasks.opennebula.client import OneUnreachableError, fetch_host_pool, resolve_endpoint
from tasks.opennebula.pool import OneHost, OpenNebulaError
from tasks.run_memo import once_per_run


class OpenNebulaLookupError(PyinfraError):
    """Stops the whole run before any host changes: without IDs no target can be labelled.

    `api_unreachable` is True only when the API could not be talked to at all (refused,
    timed out, a gateway saying oned is down): the one case the monitor-database
    fallback may cover. Wrong credentials, a reply that is not OpenNebula's, a TLS
    failure or a bad setting are never covered: they need fixing.
    """

    def __init__(self, message: str, api_unreachable: bool = False):
        super().__init__(message)
        self.api_unreachable = api_unreachable


@once_per_run
def host_pool(
    one_xmlrpc: str | None,
    one_auth_file: str | None,
    one_xmlrpc_timeout: float | str | None,
    one_xmlrpc_ca_file: str | None = None,
) -> list[OneHost]:
    """Every host OpenNebula knows, from one `one.hostpool.info` call per run and endpoint.

    Raises OpenNebulaLookupError with one line naming the endpoint and the fix; the
    secret is in none of it.
    """
    try:
        endpoint = resolve_endpoint(
            one_xmlrpc=one_xmlrpc,
            one_auth_file=one_auth_file,
            timeout=one_xmlrpc_timeout,
            ca_file=one_xmlrpc_ca_file,
        )
        return fetch_host_pool(endpoint)
    except OpenNebulaError as error:
        raise OpenNebulaLookupError(
            str(error), api_unreachable=isinstance(error, OneUnreachableError)
        ) from None
