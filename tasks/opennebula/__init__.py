"""OpenNebula: the host pool from its XML-RPC API, once per run.

client.py talks to the API (pyone), pool.py holds what it returns, matching.py
finds each hypervisor in it, discovery.py builds the inventory from it.
"""

from __future__ import annotations

from pyinfra.api.exceptions import PyinfraError

from tasks.opennebula.client import fetch_host_pool, resolve_endpoint
from tasks.opennebula.pool import OneHost, OpenNebulaError
from tasks.run_memo import once_per_run


class OpenNebulaLookupError(PyinfraError):
    """Stops the whole run before any host changes: without IDs no target can be labelled."""


@once_per_run
def host_pool(one_xmlrpc: str | None, one_auth_file: str | None, one_xmlrpc_timeout) -> list[OneHost]:
    """Every host OpenNebula knows, from one `one.hostpool.info` call per run and endpoint.

    Raises OpenNebulaLookupError with one line naming the endpoint and the fix; the
    secret is in none of it.
    """
    try:
        endpoint = resolve_endpoint(one_xmlrpc=one_xmlrpc, one_auth_file=one_auth_file, timeout=one_xmlrpc_timeout)
        return fetch_host_pool(endpoint)
    except OpenNebulaError as error:
        raise OpenNebulaLookupError(str(error)) from None
