"""The host pool as earlier versions of the client read it: pyone's generated bindings
(every field of every host as an object), reduced to OneHost entries by the conversion
those versions used. Kept as the reference tasks/opennebula/pool_xml.py must agree with.
"""

from __future__ import annotations

from collections.abc import Mapping

from tasks.opennebula.pool import HOST_STATE_NAMES, OneHost


def pyone_bound_hosts(document: str | bytes) -> list[OneHost]:
    """OneHost entries from pyone's binding of a HOST_POOL document (what pyone's
    `hostpool.info()` returns for it). Raises what pyone and the old conversion raised."""
    from pyone import bindings

    if isinstance(document, str):
        document = document.encode("utf-8")
    return hosts_from_binding(bindings.parseString(document))


def hosts_from_binding(pool) -> list[OneHost]:
    """OneHost entries from pyone's HOST_POOL object, by the earlier client's conversion."""
    from pyone.bindings import supbind

    if not isinstance(pool, supbind.HOST_POOL):
        raise TypeError(f"{type(pool).__name__}, not a HOST_POOL")
    return [_one_host(entry) for entry in pool.HOST]


def as_fields(hosts) -> list[tuple]:
    """Every field of each host, cluster and template included (OneHost's equality leaves them
    out); the template last."""
    return [
        (
            h.id,
            h.name,
            h.hostname,
            h.im_mad,
            h.state,
            h.state_name,
            h.cluster_id,
            h.cluster,
            h.template,
        )
        for h in hosts
    ]


def _one_host(entry) -> OneHost:
    state = int(entry.STATE) if entry.STATE is not None else -1
    return OneHost(
        id=int(entry.ID),
        name=entry.NAME or "",
        hostname=_template_value(entry.TEMPLATE, "HOSTNAME"),
        im_mad=entry.IM_MAD or "",
        state=state,
        state_name=HOST_STATE_NAMES.get(state, f"UNKNOWN({state})"),
        template=_template_scalars(entry.TEMPLATE),
        cluster_id=int(entry.CLUSTER_ID) if str(entry.CLUSTER_ID).strip().isdigit() else None,
        cluster=(entry.CLUSTER or "").strip() or None,
    )


def _template_scalars(template) -> tuple[tuple[str, str], ...]:
    if not isinstance(template, Mapping):
        return ()
    pairs = (
        (key, _template_value(template, key))
        for key in template
        if not isinstance(template[key], Mapping)
    )
    return tuple(sorted((str(key), value) for key, value in pairs if value is not None))


def _template_value(template, key: str) -> str | None:
    if not isinstance(template, Mapping):
        return None
    value = template.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None
