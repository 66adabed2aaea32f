"""One run at a time per host: the lock that serialises the deploy's and remove.py's
changes to a host, as plain shell and functions.

The lock is flock(1) on LOCK_FILE (under /run, so a reboot clears it). It is taken
with no extra round trip: the fact that reads the install record tries it first
(`flock -n`) and, when it is free, reads the record under it, so what the run plans
from is what it will change. The lock is then kept for the rest of the run by a small
background process holding the lock's file descriptor until the process that owns
this SSH connection is gone (OpenSSH runs each command as a child of the
connection's own `sshd` process, which lives exactly as long as the connection): a
run that ends, is killed or loses its connection releases it within a second, and
nothing waits on a lock whose holder is dead. A holder that was itself killed
leaves its description in the file: the next run takes the lock all the same and
says it reclaimed it.

When another run holds it, the record was read without the lock; the run's first
operation then waits for the lock (host_lock_timeout_s at most) and, once it has it,
checks that the record still has the digest the plan was made from (a
compare-and-swap): if another run changed it meanwhile the host fails, asking for a
new run, rather than writing over what that run recorded. `--dry` takes no lock.
"""

from __future__ import annotations

import base64
import getpass
import os
import secrets
import shlex
import socket
from dataclasses import dataclass

from tasks.install_record.record import RECORD_FILE

LOCK_DIR = "/run/scaphandre-opennebula"
LOCK_FILE = f"{LOCK_DIR}/lock"
# How often the holder looks whether the connection is gone: the lock is free at most this long after a run.
HOLDER_POLL_S = 0.5
# A holder whose connection is already gone releases the lock within HOLDER_POLL_S: worth a short wait.
RELEASE_WAIT_S = 3

# This run, as the lock's holder describes it to another run (one value per pyinfra process).
RUN_TOKEN = secrets.token_hex(8)


def run_description() -> str:
    """Who runs this pyinfra, for the message another run shows while it waits."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"pyinfra pid {os.getpid()} on {user}@{socket.gethostname()}"


@dataclass(frozen=True)
class LockRequest:
    """What the lock's holder writes about itself (the host adds user, SSH client, pid, time)."""

    inventory_host: str
    run_token: str = RUN_TOKEN
    run: str = ""

    def lines(self) -> str:
        return (
            f"run={self.run_token}\ninventory_host={self.inventory_host}\n"
            f"control={self.run or run_description()}\n"
        )


@dataclass(frozen=True)
class Holder:
    """A lock holder, as its description in the lock file says."""

    fields: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Holder:
        fields = {}
        for line in text.splitlines():
            key, separator, value = line.partition("=")
            if separator:
                fields[key.strip()] = value.strip()
        return cls(fields)

    @property
    def run_token(self) -> str:
        return self.fields.get("run", "")

    def describe(self) -> str:
        get = self.fields.get
        return (
            f"user {get('user', '?')} from {get('from') or 'a local session'} ({get('control', 'unknown run')}, "
            f"inventory host {get('inventory_host', '?')}), holder pid {get('pid', '?')}, "
            f"since {get('since', '?')}"
        )


# --------------------------------------------------------------------------- shell

_CONNECTION = r"""
lock_dir=%(lock_dir)s; lock=%(lock)s; record=%(record)s
# The process this command's life hangs on: the sshd process of this SSH connection (the
# nearest ancestor named sshd, or sshd-session since OpenSSH 9.8), else the nearest ancestor
# that is not a shell or sudo (pyinfra's local connector); and the SSH client's address,
# from our environment or, through sudo, from an ancestor's.
anchor=''; fallback=''; client=$(printf '%%s' "${SSH_CLIENT:-}" | cut -d' ' -f1); pid=$$
while [ -n "$pid" ] && [ "$pid" -gt 1 ] 2>/dev/null; do
  name=$(cat "/proc/$pid/comm" 2>/dev/null) || break
  case $name in sshd|sshd-*) anchor=$pid; break ;; esac
  if [ -z "$client" ]; then
    client=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | sed -n 's/^SSH_CLIENT=\([^ ]*\).*/\1/p' | head -n 1)
  fi
  if [ -z "$fallback" ] && [ "$pid" != $$ ]; then
    case $name in sh|bash|dash|ash|ksh|zsh|sudo|su|doas|runuser) ;; *) fallback=$pid ;; esac
  fi
  pid=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null)
done
anchor=${anchor:-$fallback}
# Keeps the lock (fd 9) in a background process until the anchor is gone, then empties the
# file (a clean release) and exits, which frees it; that process alone holds it (its watcher,
# tail, does not), so killing the pid it describes frees the lock too. Its description goes
# into the file.
hold() {
  ( trap '' HUP INT; tail --pid="$anchor" -s %(poll)s -f /dev/null 9>&-; : > "$lock" ) </dev/null >/dev/null 2>&1 &
  { printf '%%s' %(me)s
    printf 'user=%%s\nfrom=%%s\npid=%%s\nanchor=%%s\nsince=%%s\n' "${SUDO_USER:-$(id -un)}" "$client" "$!" "$anchor" \
      "$(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ)"; } > "$lock"
}
field() { sed -n "s/^$1=//p" "$lock" | head -n 1; }
describe() {
  printf 'user %%s from %%s (%%s, inventory host %%s), holder pid %%s, since %%s' "$(field user)" \
    "$(field from | grep . || echo 'a local session')" "$(field control)" "$(field inventory_host)" \
    "$(field pid)" "$(field since)"
}
record_digest() { if [ -f "$record" ]; then d=$(sha256sum < "$record") && echo "${d%%%% *}"; else echo absent; fi; }
umask 077
"""


# Tries the lock without waiting (see the module's docstring); %(release_wait)s is RELEASE_WAIT_S.
_TAKE = r"""
if [ -z "$anchor" ] || ! mkdir -p "$lock_dir" || ! chmod 700 "$lock_dir" || ! : >> "$lock"; then
  echo lock=unsupported
else
  exec 9<>"$lock"
  got=''
  if flock -n 9; then got=1
  else
    previous_anchor=$(field anchor)
    if [ -n "$previous_anchor" ] && [ ! -d "/proc/$previous_anchor" ] && flock -w %(release_wait)s 9; then got=1; fi
  fi
  if [ -n "$got" ]; then
    if [ -s "$lock" ]; then echo "stale=$(base64 -w 0 < "$lock")"; fi
    hold; echo lock=held
  else
    echo "holder=$(base64 -w 0 < "$lock")"; echo lock=busy
  fi
  exec 9>&-
fi
"""

# Waits for the lock, then checks the record is still the one the plan was made from.
_WAIT = r"""
want=%(want)s; timeout=%(timeout)s
mkdir -p "$lock_dir" && chmod 700 "$lock_dir" && : >> "$lock" || { echo "cannot create the lock $lock" >&2; exit 1; }
exec 9<>"$lock"
if ! flock -n 9; then
  if ! flock -w "$timeout" 9; then
    message="$lock is held by another run: $(describe); waited $timeout s (host_lock_timeout_s)."
    message="$message Let that run finish and run again (a run that ended releases it by itself;"
    message="$message if its holder pid is still there with no run, end it with kill)"
    printf '%%s\n' "$message" >&2
    exit 1
  fi
fi
if [ -s "$lock" ]; then
  printf '%%s\n' "reclaimed the lock $lock from a holder that ended without releasing it: $(describe)"
fi
if [ "$(record_digest)" != "$want" ]; then
  : > "$lock"
  message="another run changed this host since this run read it"
  printf '%%s\n' "$message ($record is not what the plan was made from): run again" >&2
  exit 1
fi
if [ -z "$anchor" ]; then
  printf '%%s\n' "no SSH connection process to tie the lock to: this run goes on without holding it" >&2; exit 0
fi
hold
"""


def _connection(request: LockRequest) -> str:
    return _CONNECTION % {
        "lock_dir": shlex.quote(LOCK_DIR),
        "lock": shlex.quote(LOCK_FILE),
        "record": shlex.quote(RECORD_FILE),
        "poll": HOLDER_POLL_S,
        "me": shlex.quote(request.lines()),
    }


def try_lock_and_read_record(request: LockRequest | None) -> str:
    """Shell for the record fact: with `request`, tries the lock without waiting (and waits
    RELEASE_WAIT_S at most for a holder whose connection is already gone), then prints
    `lock=held` (with `stale=` and the description a dead holder left), `lock=busy` (with
    `holder=` its description) or `lock=unsupported` (no process to tie the lock to); then
    the record: `record_sha256=` its digest (or absent) and its bytes after `content:`,
    base64-encoded. Without `request` (--dry) it only reads."""
    read = "\n".join(
        [
            (
                'if [ -f "$record" ]; then d=$(sha256sum < "$record") || exit 1; echo "record_sha256=${d%% *}"; '
                'echo content:; base64 < "$record" || exit 1; '
                'elif [ -e "$record" ]; then echo record_sha256=unusable; else echo record_sha256=absent; fi'
            ),
        ]
    )
    if request is None:
        return f"record={shlex.quote(RECORD_FILE)}\n" + read
    take = _TAKE % {"release_wait": RELEASE_WAIT_S}
    return _connection(request) + take + read


def wait_for_lock(request: LockRequest, record_digest_read: str, timeout_s: int) -> str:
    """Shell for the operation that waits for a lock another run held when the plan was
    made: at most `timeout_s`, then fails naming the lock file and its holder; once taken,
    fails unless the record still has the digest `record_digest_read` the plan was made
    from (another run changed this host meanwhile); else keeps it for the rest of the run."""
    return _connection(request) + _WAIT % {
        "want": shlex.quote(record_digest_read),
        "timeout": int(timeout_s),
    }


def decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", "replace") if value else ""
