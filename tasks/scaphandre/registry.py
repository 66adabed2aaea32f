"""Which registry login a hypervisor holds, judged without ever reading the credentials back.

`docker login` stores the password (base64, so readable) in root's Docker config on the
host. The deploy never reads that file: beside it, a root-only marker keeps a salted,
slow digest of registry, user and password, and only that digest travels back to the
machine running pyinfra. A changed password gives another digest, so a rotated password
is applied on the next run; the same one is not sent again.

Plain logic: no pyinfra state, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
import secrets
from collections.abc import Mapping
from typing import Any

# Root-only (0700) directory on each hypervisor, one marker file per registry.
LOGIN_MARKER_DIR = "/var/lib/scaphandre-deploy/registry-logins"
_SCHEME = "pbkdf2-sha256"
_ITERATIONS = 200_000


def login_marker_path(registry: str) -> str:
    """The marker file of one registry (host[:port]), with a file-name-safe name."""
    return posixpath.join(LOGIN_MARKER_DIR, re.sub(r"[^A-Za-z0-9._-]", "_", registry) + ".digest")


def _derive(registry: str, username: str, password: str, salt: bytes, iterations: int) -> str:
    material = "\0".join((registry, username, password)).encode()
    return hashlib.pbkdf2_hmac("sha256", material, salt, iterations).hex()


def credentials_digest(
    registry: str, username: str, password: str, salt: bytes | None = None
) -> str:
    """`pbkdf2-sha256$ITERATIONS$SALT$DIGEST` for these credentials; a fresh random salt
    unless one is given. Salted and slow: a digest printed in a log cannot be turned back
    into a weak password by a lookup table."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    return f"{_SCHEME}${_ITERATIONS}${salt.hex()}${_derive(registry, username, password, salt, _ITERATIONS)}"


def digest_matches(stored: str | None, registry: str, username: str, password: str) -> bool:
    """True when `stored` (a marker's content, or None) was made from these very credentials."""
    parts = (stored or "").strip().split("$")
    if len(parts) != 4 or parts[0] != _SCHEME or not parts[1].isdigit():
        return False
    try:
        salt = bytes.fromhex(parts[2])
    except ValueError:
        return False
    iterations = int(parts[1])
    if not 1 <= iterations <= 10 * _ITERATIONS:  # a marker is not a way to make the deploy spin
        return False
    return hmac.compare_digest(parts[3], _derive(registry, username, password, salt, iterations))


def logged_in_as(
    found: Mapping[str, Any] | None, registry: str, username: str, password: str
) -> bool:
    """Whether the host's login state (RegistryLoginState; None: not read) shows root's Docker
    client logged in to `registry` with these very credentials: nothing to send."""
    return bool(
        found
        and found.get("logged_in")
        and digest_matches(found.get("digest"), registry, username, password)
    )
