#!/usr/bin/env python3
"""scaphandre-energy-sync: write each host's and VM's power into OpenNebula.

Run on the Prometheus server (usually the OpenNebula frontend) by a systemd timer.
Each run reads from Prometheus' HTTP API the power of every hypervisor and VM averaged
over the sync interval and their energy over the last 24 h (the recording rules
one_host:power_watts, one_vm:power_watts, one_host:energy_kwh:24h, one_vm:energy_kwh:24h, and
where a carbon intensity is set one_host:emissions_gco2e:24h, one_vm:emissions_gco2e:24h),
then writes them through oned's XML-RPC API as attributes of the host's TEMPLATE and of the
VM's USER_TEMPLATE, so that SCHED_RANK / SCHED_REQUIREMENTS can use them:

  SCAPHANDRE_POWER_W          mean power over the last interval_s, watts, rounded to 0.1 W
  SCAPHANDRE_SCORE            hosts only: 100000 - 10 x SCAPHANDRE_POWER_W, a whole number
                              from 10 (9999 W) to 100000 (0 W); higher is better, so with
                              SCHED_RANK = "SCAPHANDRE_SCORE" a host without one (0) comes
                              last, and 0.1 W apart is 1 apart after oned's integer cast
  SCAPHANDRE_ENERGY_KWH_24H   energy over the last 24 hours, kWh, rounded to 0.001 kWh
  SCAPHANDRE_CO2E_G_24H       emissions over the last 24 hours, grams of CO2e, rounded to
                              0.1 g (a VM's from its attributed power); only where a carbon
                              intensity is set, written with the other values (it moves
                              with the energy), deleted with them
  SCAPHANDRE_SAMPLE_TIME      unix time (whole seconds, UTC) of the newest power sample
                              behind the values written

Rules (all thresholds from the config file):
  - current or absent: an object is written only from one unambiguous series with power
    samples from the last interval_s (the mean is of those), a VM only from the host
    OpenNebula says it runs on now. Once Prometheus has had no such sample for max_age_s,
    the object's values are deleted: OpenNebula's expressions cannot tell a value's age;
  - plausible: a power below 0 or above host_max_power_w / vm_max_power_w (an energy below
    0 or above that power for 24 h) is refused; a refused power deletes the object's values;
  - consistent: the attributes of one object are written in one update; one without a
    current value (the energy when Prometheus has none) is deleted in that same update;
  - canonical IDs: a series names an object only through a decimal one_host_id/one_vm_id
    without leading zeros; two current series for one object are a conflict, and that
    object is not written (its values are deleted once they are older than max_age_s);
  - few writes: an object is rewritten only when its power moved by more than the larger
    of threshold_watts and threshold_percent of the stored value, its energy by more than
    the larger of threshold_kwh and threshold_percent, or its stored sample time is older
    than refresh_s (so SAMPLE_TIME stays meaningful while power is steady);
  - one call to read all hosts (one.hostpool.info), one for all VMs
    (one.vmpool.infoextended), at most one update (merge mode) per object per run;
  - everything is computed before the first write; a failed object is named on stderr and
    the others are still written; the exit status is non-zero when anything failed.

Credentials: the first line of one_auth_file, "user:password" (a UTF-8 BOM is ignored).
They are sent to oned only, never printed, logged, put on a command line or in an error.

Usage:
  scaphandre_energy_sync.py [--config PATH] [--dry-run]
  scaphandre_energy_sync.py [--config PATH] --remove-attributes

--remove-attributes deletes the attributes this program writes from every host and VM
carrying them (merge-mode update with the empty vector form ATTR = [], which oned treats
as a deletion: no other attribute is rewritten). Only Python 3's standard library is
needed (3.6+).
"""

import argparse
import collections
import configparser
import http.client
import json
import math
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.parsers.expat
import xmlrpc.client
from xml.etree import ElementTree

PROGRAM = "scaphandre-energy-sync"
DEFAULT_CONFIG = "/etc/one/scaphandre-energy-sync.conf"
CONFIG_SECTION = "scaphandre-energy-sync"

POWER_ATTRIBUTE = "SCAPHANDRE_POWER_W"
SCORE_ATTRIBUTE = "SCAPHANDRE_SCORE"
ENERGY_ATTRIBUTE = "SCAPHANDRE_ENERGY_KWH_24H"
SAMPLE_TIME_ATTRIBUTE = "SCAPHANDRE_SAMPLE_TIME"
CO2E_ATTRIBUTE = "SCAPHANDRE_CO2E_G_24H"
OWNED_ATTRIBUTES = (
    POWER_ATTRIBUTE,
    SCORE_ATTRIBUTE,
    ENERGY_ATTRIBUTE,
    SAMPLE_TIME_ATTRIBUTE,
    CO2E_ATTRIBUTE,
)

POWER_DECIMALS = 1
ENERGY_DECIMALS = 3
CO2E_DECIMALS = 1
# SCAPHANDRE_SCORE = SCORE_BASE - 10 x power: positive up to SCORE_POWER_LIMIT_W, the
# highest host_max_power_w allowed, and exact in the scheduler's float arithmetic.
SCORE_BASE = 100000
SCORE_STEPS_PER_WATT = 10
SCORE_POWER_LIMIT_W = 9999
HOURS_PER_DAY = 24
# A stored sample time further ahead than this is not a clock's drift but a wrong value.
CLOCK_SKEW_S = 60
# Values are kept at most two days without a sample (twice the longest interval).
MAX_AGE_LIMIT_S = 172800
# OpenNebula's IDs as oned prints them: "0", or digits without a leading zero.
CANONICAL_ID = re.compile(r"0|[1-9][0-9]*")

DEFAULT_SETTINGS = collections.OrderedDict(
    [
        ("prometheus_url", "http://127.0.0.1:9090"),
        ("one_xmlrpc", "http://localhost:2633/RPC2"),
        ("one_auth_file", "/var/lib/one/.one/one_auth"),
        ("interval_s", "300"),
        ("max_age_s", "900"),
        ("host_max_power_w", "5000"),
        ("vm_max_power_w", "2000"),
        ("threshold_percent", "2"),
        ("threshold_watts", "1"),
        ("threshold_kwh", "0.01"),
        ("refresh_s", "3600"),
        ("timeout_s", "30"),
    ]
)

# oned's XML-RPC conventions (include/Request.h, PoolSQL.h, the XML-RPC API reference).
ONE_AUTHENTICATION = 0x0100
ONE_AUTHORIZATION = 0x0200
ONE_NO_EXISTS = 0x0400
POOL_FILTER_ALL = -2  # every VM, whoever owns it
POOL_RANGE_UNBOUNDED = -1  # start/end ID: no bound
VM_STATE_NOT_DONE = -1  # every state but DONE
UPDATE_MERGE = 1  # 0 would replace the whole template

Settings = collections.namedtuple("Settings", [*DEFAULT_SETTINGS, "source"])
# The figure chosen for an object: mean power over the interval, time of its newest sample.
Sample = collections.namedtuple("Sample", "power_w last_sample_s")
# One series of an object in Prometheus: the host it was measured on, its mean power over
# the interval (None: no sample in it), the time of its newest sample within max_age_s
# (None: none) and whether Prometheus has it now (not ended by a staleness marker).
Series = collections.namedtuple("Series", "host_id power_w newest_s live")
# A host or VM as oned lists it, reduced to what the sync needs.
OneObject = collections.namedtuple("OneObject", "kind id name owned current_host_id")
# One update of one object: the attributes to set and those to delete, in one merge.
# reason: "write" (current values), "expire" (stale values deleted) or "refuse"
# (implausible figures: the object's values deleted).
PlannedWrite = collections.namedtuple("PlannedWrite", "obj attributes removed reason")


class SyncError(Exception):
    """A one-line message for the operator, naming what failed and what to fix.

    Never built from the credentials file's content.
    """


class OneUnreachable(SyncError):
    """oned could not be talked to (refused, timed out, not XML-RPC)."""


class OneFault(SyncError):
    """oned answered with a failure: the message is oned's own text."""

    def __init__(self, message, code):
        SyncError.__init__(self, message)
        self.code = code


# --------------------------------------------------------------------------- output


class Log:
    """Writes errors to stderr and information to stdout, one line each.

    A stream connected to the journal (systemd names it in JOURNAL_STREAM) gets a syslog
    priority prefix on each line, so the journal files errors as errors; the secret is
    masked out of every line.
    """

    def __init__(self, secrets=()):
        self.secrets = [secret for secret in secrets if secret]
        self.journal = {stream: _is_journal(stream) for stream in ("stdout", "stderr")}

    def add_secret(self, secret):
        """Mask secret, and its form with each run of blanks made one space (how a message
        that already went through such a flattening would carry it)."""
        for form in (secret, " ".join((secret or "").split())):
            # Masking a very short password would garble every line for no protection.
            if form and len(form) >= 4 and form not in self.secrets:
                self.secrets.append(form)

    def redact(self, text):
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _emit(self, name, priority, text):
        stream = getattr(sys, name)
        # Masked before anything else changes the text: a password holding blanks or a
        # newline would no longer match once they are flattened.
        line = " ".join(self.redact(str(text)).split())
        stream.write(("<%d>" % priority if self.journal[name] else "") + line + "\n")
        stream.flush()

    def error(self, text):
        self._emit("stderr", 3, text)

    def info(self, text):
        self._emit("stdout", 6, text)


def _is_journal(name):
    """True when sys.<name> is the journal stream systemd gave the service (device:inode)."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        status = os.fstat(getattr(sys, name).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


# --------------------------------------------------------------------------- settings


def load_settings(path):
    """Return Settings from the INI file at path, defaults filled in.

    Raises SyncError naming the file and the setting when the file is missing,
    unreadable, has an unknown key or a value out of range.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            parser.read_file(handle)
    except OSError as error:
        raise SyncError("cannot read the configuration %s: %s" % (path, error.strerror)) from None
    except (configparser.Error, UnicodeDecodeError) as error:
        raise SyncError(
            "configuration %s is not a valid INI file: %s" % (path, " ".join(str(error).split()))
        ) from None
    if not parser.has_section(CONFIG_SECTION):
        raise SyncError("configuration %s has no [%s] section" % (path, CONFIG_SECTION))
    raw = dict(DEFAULT_SETTINGS)
    for key, value in parser.items(CONFIG_SECTION):
        if key not in DEFAULT_SETTINGS:
            raise SyncError(
                "configuration %s: unknown setting %r; known settings: %s"
                % (path, key, ", ".join(DEFAULT_SETTINGS))
            )
        raw[key] = value.strip()
    # Under a minute a window may hold no sample of a rule evaluated once a minute.
    interval_s = int(_number(path, "interval_s", raw["interval_s"], 60, 86400, whole=True))
    # Two intervals at least: one run that finds no sample must not yet delete the values.
    max_age_s = int(
        _number(
            path,
            "max_age_s",
            raw["max_age_s"],
            2 * interval_s,
            MAX_AGE_LIMIT_S,
            whole=True,
            why="at least twice interval_s",
        )
    )
    host_max_power_w = _number(
        path, "host_max_power_w", raw["host_max_power_w"], 1, SCORE_POWER_LIMIT_W
    )
    return Settings(
        prometheus_url=_url(path, "prometheus_url", raw["prometheus_url"]).rstrip("/"),
        one_xmlrpc=_url(path, "one_xmlrpc", raw["one_xmlrpc"]),
        one_auth_file=_non_empty(path, "one_auth_file", raw["one_auth_file"]),
        interval_s=interval_s,
        max_age_s=max_age_s,
        host_max_power_w=host_max_power_w,
        # A VM's power is a share of its host's.
        vm_max_power_w=_number(
            path,
            "vm_max_power_w",
            raw["vm_max_power_w"],
            1,
            host_max_power_w,
            why="at most host_max_power_w",
        ),
        threshold_percent=_number(path, "threshold_percent", raw["threshold_percent"], 0, 100),
        threshold_watts=_number(path, "threshold_watts", raw["threshold_watts"], 0, 1e6),
        threshold_kwh=_number(path, "threshold_kwh", raw["threshold_kwh"], 0, 1e6),
        refresh_s=int(_number(path, "refresh_s", raw["refresh_s"], 0, 10**7, whole=True)),
        timeout_s=_number(path, "timeout_s", raw["timeout_s"], 1, 3600),
        source=path,
    )


def _url(path, key, value):
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SyncError("configuration %s: %s is %r, not an http(s) URL" % (path, key, value))
    if parsed.username or parsed.password:
        raise SyncError(
            "configuration %s: %s must not hold credentials; OpenNebula's go "
            "in one_auth_file" % (path, key)
        )
    return value


def _non_empty(path, key, value):
    if not value:
        raise SyncError("configuration %s: %s is empty" % (path, key))
    return value


def _number(path, key, value, lowest, highest, whole=False, why=None):
    """value as a number from lowest to highest; why names the setting a bound comes from."""
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        number = float("nan")
    if not (lowest <= number <= highest):
        kind = "a whole number" if whole else "a number"
        raise SyncError(
            "configuration %s: %s is %r: it must be %s from %s to %s%s"
            % (
                path,
                key,
                value,
                kind,
                _plain(lowest),
                _plain(highest),
                " (%s)" % why if why else "",
            )
        )
    return number


def _plain(number):
    return "%d" % number if number == int(number) else "%g" % number


def read_session(path):
    """Return "user:password" from the first line of the credentials file.

    A UTF-8 BOM and surrounding blanks are ignored. Raises SyncError naming the file (never
    its content) when it is unreadable or not of the form user:password.
    """
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline(65536)
    except OSError as error:
        raise SyncError(
            "cannot read OpenNebula credentials from %s: %s; the service user "
            "must be able to read it (one_auth_file)" % (path, error.strerror)
        ) from None
    try:
        session = first_line.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise SyncError(
            "OpenNebula credentials file %s is not UTF-8 text: its first line "
            "must be user:password" % path
        ) from None
    user, separator, password = session.partition(":")
    if not separator or not user.strip() or not password:
        raise SyncError(
            "OpenNebula credentials file %s is malformed: its first line must "
            "be user:password" % path
        )
    return session


# --------------------------------------------------------------------------- Prometheus


# What each kind of object is measured by: the power rule, the label naming the object, and
# the energy over 24 h by object.
MEASURES = {
    "host": (
        "one_host:power_watts",
        "one_host_id",
        # One host is one target: max only guards against a second job scraping it.
        "max by (one_host_id) (one_host:energy_kwh:24h)",
    ),
    "VM": (
        "one_vm:power_watts",
        "one_vm_id",
        # A VM that migrated today drew energy on each host it ran on: add them up.
        "sum by (one_vm_id) (one_vm:energy_kwh:24h)",
    ),
}
# Emissions over 24 h by object, the same way; recorded only where a carbon intensity is set.
EMISSIONS = {
    "host": "max by (one_host_id) (one_host:emissions_gco2e:24h)",
    "VM": "sum by (one_vm_id) (one_vm:emissions_gco2e:24h)",
}


def power_queries(metric, interval_s, max_age_s):
    """PromQL for one power rule: (mean power, live series' newest sample, newest sample
    within max_age_s).

    timestamp() of a selector is the time of the sample itself, and answers only for a
    series Prometheus has now: one that ended (its VM stopped or moved, its exporter went
    away) got a staleness marker and is not in it. The subquery sees samples only at its
    steps (every evaluation interval), so it stands in for the ended ones: it tells how
    long ago such a series was last measured.
    """
    return (
        "avg_over_time(%s[%ds])" % (metric, interval_s),
        "timestamp(%s)" % metric,
        "max_over_time(timestamp(%s)[%ds:])" % (metric, max_age_s),
    )


class Prometheus:
    """Instant queries against Prometheus' HTTP API, all evaluated at one time."""

    def __init__(self, url, timeout_s, at):
        self.url = url
        self.timeout_s = timeout_s
        self.at = at
        # The API is local to the frontend: an http_proxy meant for the outside is not for it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def query(self, promql):
        """Return [(labels, value)] of an instant vector (NaN and infinities included: a
        power that is not a number is implausible, not absent).

        Raises SyncError naming Prometheus' URL and the query when it cannot answer.
        """
        body = urllib.parse.urlencode({"query": promql, "time": "%.3f" % self.at})
        request = urllib.request.Request(
            self.url + "/api/v1/query",
            data=body.encode("ascii"),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        where = "Prometheus at %s" % self.url
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise SyncError(
                "%s rejected the query %s: HTTP %d %s"
                % (where, promql, error.code, _prometheus_error(error))
            ) from None
        except urllib.error.URLError as error:
            raise SyncError(
                "%s is unreachable: %s; check prometheus_url and that Prometheus "
                "runs" % (where, _reason(error.reason, self.timeout_s))
            ) from None
        except (OSError, http.client.HTTPException) as error:
            raise SyncError(
                "%s is unreachable: %s" % (where, _reason(error, self.timeout_s))
            ) from None
        try:
            document = json.loads(payload.decode("utf-8"))
            if document.get("status") != "success":
                raise ValueError(document.get("error", "status is not success"))
            data = document["data"]
            if data["resultType"] != "vector":
                raise ValueError("result type %s, not vector" % data["resultType"])
            rows = [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise SyncError(
                "%s gave no usable answer to %s: %s"
                % (where, promql, " ".join(str(error).split())[:200])
            ) from None
        return rows


def _prometheus_error(error):
    try:
        return json.loads(error.read().decode("utf-8")).get("error", error.reason)
    except (ValueError, AttributeError, OSError):
        return error.reason


def _reason(reason, timeout_s):
    if isinstance(reason, socket.timeout):
        return "no answer within %g s" % timeout_s
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return " ".join(str(reason).split()) or type(reason).__name__


def _series_key(labels):
    return tuple(sorted((name, value) for name, value in labels.items() if name != "__name__"))


def canonical_id(value):
    """The ID a label value names, or None: only "0" or ASCII digits without a leading zero.

    "05" is not VM 5, nor is an Arabic-Indic digit five, nor "5" and a newline: each could
    make one guest's power another VM's.
    """
    if isinstance(value, str) and CANONICAL_ID.fullmatch(value):
        return int(value)
    return None


# What one kind of object measured: {id: [Series]}, {id: kWh}, the label values that
# name no object because they are not canonical IDs (shown, never used), and {id: g CO2e}.
Measurements = collections.namedtuple("Measurements", "series energy ignored co2e")
Measurements.__new__.__defaults__ = (None,)  # no emissions measured (the namedtuple way of 3.6)


def join_series(mean_rows, live_rows, recent_rows):
    """[(labels, Series)] of every series with a sample within max_age_s; host_id unset.

    The newest sample time is the live one when Prometheus has the series now (exact), the
    subquery's otherwise.
    """
    mean = {_series_key(labels): value for labels, value in mean_rows}
    live = {_series_key(labels): value for labels, value in live_rows if math.isfinite(value)}
    joined, seen = [], set()
    for labels, recent in list(live_rows) + list(recent_rows):
        key = _series_key(labels)
        if key in seen or not math.isfinite(recent):
            continue
        seen.add(key)
        joined.append((labels, Series(None, mean.get(key), live.get(key, recent), key in live)))
    return joined


def measure(prometheus, kind, settings):
    """Measurements of hosts or VMs from five instant queries.

    A VM keeps one series per host it was measured on (two while it migrates); a host one
    per target. Series are kept apart here: choosing between them is the plan's job.
    """
    metric, id_label, energy_query = MEASURES[kind]
    mean_query, live_query, recent_query = power_queries(
        metric, settings.interval_s, settings.max_age_s
    )
    joined = join_series(
        prometheus.query(mean_query), prometheus.query(live_query), prometheus.query(recent_query)
    )
    series, ignored = {}, set()
    for labels, found in joined:
        object_id = _labelled_id(labels, id_label, ignored)
        host_id = _labelled_id(labels, "one_host_id", ignored)
        if object_id is None or host_id is None:
            continue
        series.setdefault(object_id, []).append(found._replace(host_id=host_id))
    energy, co2e = {}, {}
    for query, figures in ((energy_query, energy), (EMISSIONS[kind], co2e)):
        for labels, value in prometheus.query(query):
            object_id = _labelled_id(labels, id_label, ignored)
            if object_id is not None:
                figures[object_id] = value
    return Measurements(series, energy, sorted(ignored), co2e)


def _labelled_id(labels, name, ignored):
    """The canonical ID in label name; a value that is not one is noted in ignored."""
    value = labels.get(name)
    if value is None:
        return None
    object_id = canonical_id(value)
    if object_id is None:
        ignored.add("%s=%s" % (name, json.dumps(value)))
    return object_id


# --------------------------------------------------------------------------- OpenNebula


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout_s):
        xmlrpc.client.Transport.__init__(self)
        self._timeout_s = timeout_s

    def make_connection(self, host):
        connection = xmlrpc.client.Transport.make_connection(self, host)
        connection.timeout = self._timeout_s
        return connection


class _SafeTimeoutTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout_s):
        xmlrpc.client.SafeTransport.__init__(self)
        self._timeout_s = timeout_s

    def make_connection(self, host):
        connection = xmlrpc.client.SafeTransport.make_connection(self, host)
        connection.timeout = self._timeout_s
        return connection


class OneClient:
    """oned's XML-RPC API: every call sends the session first and unwraps oned's envelope.

    The session lives only in this object's private attribute and in request bodies.
    """

    def __init__(self, url, session, timeout_s):
        self.url = url
        self.user = session.split(":", 1)[0]
        self._session = session
        self._timeout_s = timeout_s
        transport_class = _SafeTimeoutTransport if url.startswith("https") else _TimeoutTransport
        self._proxy = xmlrpc.client.ServerProxy(url, transport=transport_class(timeout_s))

    def __repr__(self):
        return "OneClient(%r, user=%r)" % (self.url, self.user)

    def call(self, method, *params):
        """Return the body of oned's success reply.

        Raises OneFault with oned's message on a failure reply, OneUnreachable when oned
        cannot be talked to; neither message can hold the session.
        """
        where = "OpenNebula at %s" % self.url
        try:
            reply = getattr(self._proxy, method)(self._session, *params)
        except xmlrpc.client.Fault as fault:
            # The XML-RPC layer's own refusal (unknown method, wrong argument type).
            raise OneFault(
                "%s fault %s: %s" % (method, fault.faultCode, fault.faultString), None
            ) from None
        except xmlrpc.client.ProtocolError as error:
            raise OneUnreachable(
                "%s answered %s with HTTP %s %s; check one_xmlrpc"
                % (where, method, error.errcode, error.errmsg)
            ) from None
        except (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError, ValueError):
            raise OneUnreachable(
                "%s did not answer %s in XML-RPC: check that one_xmlrpc "
                "points to oned's endpoint" % (where, method)
            ) from None
        except (OSError, http.client.HTTPException) as error:
            raise OneUnreachable(
                "%s is unreachable (%s): %s; check one_xmlrpc and that oned "
                "runs" % (where, method, _reason(error, self._timeout_s))
            ) from None
        if not isinstance(reply, (list, tuple)) or len(reply) < 3 or not isinstance(reply[0], bool):
            raise OneUnreachable(
                "%s answered %s with something that is not oned's reply; "
                "check one_xmlrpc" % (where, method)
            )
        if reply[0]:
            return reply[1]
        raise OneFault(str(reply[1]), reply[2])


def connect(settings, log):
    """Return a OneClient with the session read from the credentials file."""
    session = read_session(settings.one_auth_file)
    log.add_secret(session)
    log.add_secret(session.split(":", 1)[1])
    return OneClient(settings.one_xmlrpc, session, settings.timeout_s)


def read_pools(client, settings):
    """Return ({host_id: OneObject}, {vm_id: OneObject}) from one call per pool.

    one.vmpool.info would answer with a short USER_TEMPLATE (oned keeps only what Sunstone
    and the scheduler list), hence the extended pool.
    """
    try:
        hosts = parse_pool(client.call("one.hostpool.info"), "HOST", "TEMPLATE", "host")
        vms = parse_pool(
            client.call(
                "one.vmpool.infoextended",
                POOL_FILTER_ALL,
                POOL_RANGE_UNBOUNDED,
                POOL_RANGE_UNBOUNDED,
                VM_STATE_NOT_DONE,
            ),
            "VM",
            "USER_TEMPLATE",
            "VM",
        )
    except OneFault as fault:
        raise SyncError(_pool_fault_message(fault, client, settings)) from None
    return hosts, vms


def _pool_fault_message(fault, client, settings):
    if fault.code == ONE_AUTHENTICATION:
        return (
            "OpenNebula at %s refused the credentials of user %r from %s: check the "
            "password there" % (client.url, client.user, settings.one_auth_file)
        )
    if fault.code == ONE_AUTHORIZATION:
        return (
            "OpenNebula at %s does not let user %r (from %s) list hosts and VMs: %s; "
            "use oneadmin's credentials" % (client.url, client.user, settings.one_auth_file, fault)
        )
    return "OpenNebula at %s: %s" % (client.url, fault)


def parse_pool(xml_text, element, template_element, kind):
    """Return {id: OneObject} from a HOST_POOL or VM_POOL document.

    OneObject.owned maps each attribute this program owns that the object carries to its
    first value (None when it is not a plain value).
    """
    if not isinstance(xml_text, str):
        raise OneUnreachable("oned's %s pool reply is not a document" % kind)
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as error:
        raise OneUnreachable("oned's %s pool reply is not XML: %s" % (kind, error)) from None
    objects = {}
    for node in root.findall(element):
        object_id = int(node.findtext("ID", "-1"))
        objects[object_id] = OneObject(
            kind=kind,
            id=object_id,
            name=node.findtext("NAME", ""),
            owned=_owned_attributes(node.find(template_element)),
            current_host_id=_current_host(node) if kind == "VM" else object_id,
        )
    return objects


def _owned_attributes(template):
    owned = {}
    if template is None:
        return owned
    for name in OWNED_ATTRIBUTES:
        node = template.find(name)
        if node is not None:
            owned[name] = None if len(node) else (node.text or "").strip()
    return owned


def _current_host(vm_node):
    """The host of the VM's newest history record (None when it never ran)."""
    newest = None
    for history in vm_node.findall("HISTORY_RECORDS/HISTORY"):
        sequence = int(history.findtext("SEQ", "-1"))
        if newest is None or sequence > newest[0]:
            newest = (sequence, int(history.findtext("HID", "-1")))
    return None if newest is None else newest[1]


def label(obj):
    """How messages name an object: 'host 3 (kvm1)', 'VM 42 (web)'."""
    return "%s %d (%s)" % (obj.kind, obj.id, obj.name) if obj.name else "%s %d" % (obj.kind, obj.id)


def render_template(attributes, removed=()):
    """OpenNebula template text for plain values (digits and dots only, quoted), then the
    deletion of each name in removed: one merge-mode update does both."""
    return "".join(
        '%s = "%s"\n' % (name, value) for name, value in attributes.items()
    ) + removal_template(removed)


def removal_template(names):
    """Merge-mode template deleting each named attribute: oned drops an attribute whose
    new value is an empty vector (NAME = []) and rewrites nothing else."""
    return "".join("%s = []\n" % name for name in names)


def update_method(obj):
    return "one.host.update" if obj.kind == "host" else "one.vm.update"


# --------------------------------------------------------------------------- planning


def score(power_text):
    """SCAPHANDRE_SCORE of a host whose SCAPHANDRE_POWER_W is power_text (0.1 W steps).

    SCORE_BASE - 10 x power: higher is better, from 10 at SCORE_POWER_LIMIT_W to 100000
    at 0 W. It stays above 0, the value a rank gives a host without it, so an unmeasured
    host comes last; each 0.1 W is one step, which oned's integer cast of a rank keeps; and
    every value is a whole number well under 2^24, exact in the scheduler's float.
    """
    return SCORE_BASE - round(float(power_text) * SCORE_STEPS_PER_WATT)


def desired_attributes(kind, sample, energy_kwh, co2e_g=None):
    """The attribute values to write for a current, plausible figure, rounded as documented
    (the score for hosts only: the scheduler ranks hosts; emissions only when there are some
    that are a number of grams)."""
    attributes = collections.OrderedDict()
    attributes[POWER_ATTRIBUTE] = "%.*f" % (POWER_DECIMALS, sample.power_w)
    if kind == "host":
        attributes[SCORE_ATTRIBUTE] = "%d" % score(attributes[POWER_ATTRIBUTE])
    if energy_kwh is not None:
        attributes[ENERGY_ATTRIBUTE] = "%.*f" % (ENERGY_DECIMALS, energy_kwh)
    attributes[SAMPLE_TIME_ATTRIBUTE] = "%d" % int(sample.last_sample_s)
    if co2e_g is not None and math.isfinite(co2e_g) and co2e_g >= 0:
        attributes[CO2E_ATTRIBUTE] = "%.*f" % (CO2E_DECIMALS, co2e_g)
    return attributes


def power_ceiling(kind, settings):
    return settings.host_max_power_w if kind == "host" else settings.vm_max_power_w


def implausible(kind, power_w, energy_kwh, settings):
    """(power refused, energy refused, what was refused) for a measured figure.

    Refused: below 0 or above the kind's power ceiling; energy below 0 or above that power
    drawn for 24 h. NaN and infinities are refused too (no comparison holds for them).
    """
    ceiling = power_ceiling(kind, settings)
    refused = []
    power_refused = not 0 <= power_w <= ceiling
    if power_refused:
        refused.append("power %s W (0 to %s W)" % (_shown(power_w), _plain(ceiling)))
    energy_ceiling = ceiling * HOURS_PER_DAY / 1000.0
    energy_refused = energy_kwh is not None and not 0 <= energy_kwh <= energy_ceiling
    if energy_refused:
        refused.append(
            "24 h energy %s kWh (0 to %s kWh)" % (_shown(energy_kwh), _plain(energy_ceiling))
        )
    return power_refused, energy_refused, ", ".join(refused)


def _shown(value):
    return "%.6g" % value


def moved(stored, new_text, floor, percent):
    """True when new_text differs from the stored text by more than max(floor, percent %)."""
    try:
        old = float(stored)
    except (TypeError, ValueError):
        return True
    if not math.isfinite(old):
        return True
    return abs(float(new_text) - old) > max(floor, abs(old) * percent / 100.0)


def needs_write(owned, desired, now, settings, ceiling):
    """True when the stored values must be rewritten: one is missing, moved beyond the
    thresholds, not what the sync would have written with it (an implausible power, a score
    that is not the stored power's, a sample time that is not a time or lies ahead of this
    clock), older than refresh_s, or there is an attribute with no current value beside
    them (deleted in the same write)."""
    if set(owned) - set(desired) or set(desired) - set(owned):
        return True
    stored_power = owned.get(POWER_ATTRIBUTE)
    if moved(
        stored_power, desired[POWER_ATTRIBUTE], settings.threshold_watts, settings.threshold_percent
    ):
        return True
    if not 0 <= float(stored_power) <= ceiling:
        return True
    if SCORE_ATTRIBUTE in desired and owned.get(SCORE_ATTRIBUTE) != "%d" % score(stored_power):
        return True
    if ENERGY_ATTRIBUTE in desired and moved(
        owned.get(ENERGY_ATTRIBUTE),
        desired[ENERGY_ATTRIBUTE],
        settings.threshold_kwh,
        settings.threshold_percent,
    ):
        return True
    age = stored_age(owned, now)
    return age is None or age > settings.refresh_s


def stored_age(owned, now):
    """Seconds since the stored SAMPLE_TIME; None when it is missing, not a time, or ahead
    of this clock by more than CLOCK_SKEW_S (such a value vouches for nothing)."""
    stored_time = canonical_id(owned.get(SAMPLE_TIME_ATTRIBUTE))
    if stored_time is None or stored_time > now + CLOCK_SKEW_S:
        return None
    return max(0, now - stored_time)


# How the series of one object resolve: one current figure, a conflict, or none.
Choice = collections.namedtuple("Choice", "outcome series newest_s measured_elsewhere")


def choose_series(obj, series):
    """The series that gives obj its figure, if exactly one can.

    Candidates are the series with samples in the interval; if Prometheus has some of them
    now, only those (one that ended is a VM that moved on, or an exporter gone). Two or more
    candidates are a conflict: one VM measured on two hosts at once, or one object under
    two label sets; neither is chosen. One candidate gives the figure, a VM's only when it
    was measured on the host OpenNebula runs it on. With none, newest_s is the time of the
    object's newest sample within max_age_s there (None: no such sample).
    """
    here = [item for item in series if obj.kind == "host" or item.host_id == obj.current_host_id]
    fresh = [item for item in series if item.power_w is not None]
    candidates = [item for item in fresh if item.live] or fresh
    if len(candidates) > 1:
        return Choice("conflict", candidates, None, False)
    if candidates and candidates[0] in here:
        return Choice("current", candidates, candidates[0].newest_s, False)
    newest = max((item.newest_s for item in here), default=None)
    return Choice("none", [], newest, bool(candidates))


class Plan:
    """What one run will do, decided before any write."""

    def __init__(self):
        self.writes = []  # [PlannedWrite]: every update, whatever its reason
        self.unchanged = []  # [OneObject]
        self.not_fresh = []  # [OneObject]: no current figure, values kept (not max_age_s yet)
        self.expired = []  # [OneObject]: no sample for max_age_s: values deleted
        self.refused = []  # [(OneObject, "power 1e+20 W (0 to 5000 W)")]
        self.conflicts = []  # [(OneObject, [Series])]
        self.unknown = []  # ["host 7"]: current in Prometheus, absent from OpenNebula
        self.ignored = []  # ['one_vm_id="05"']: label values that are no canonical ID

    def expire(self, obj):
        self.expired.append(obj)
        self.writes.append(
            PlannedWrite(obj, collections.OrderedDict(), sorted(obj.owned), "expire")
        )


def plan_sync(hosts, vms, host_measured, vm_measured, now, settings):
    """Return the Plan for the pools and the measurements; pure, no I/O."""
    plan = Plan()
    for pool, measured in ((hosts, host_measured), (vms, vm_measured)):
        for object_id in sorted(pool):
            _plan_object(
                plan,
                pool[object_id],
                measured.series.get(object_id, []),
                measured.energy.get(object_id),
                now,
                settings,
                (measured.co2e or {}).get(object_id),
            )
    for kind, pool, measured in (("host", hosts, host_measured), ("VM", vms, vm_measured)):
        for object_id in sorted(set(measured.series) - set(pool)):
            if any(item.power_w is not None for item in measured.series[object_id]):
                plan.unknown.append("%s %d" % (kind, object_id))
        plan.ignored.extend(item for item in measured.ignored if item not in plan.ignored)
    return plan


def _plan_object(plan, obj, series, energy_kwh, now, settings, co2e_g=None):
    choice = choose_series(obj, series)
    if choice.outcome == "conflict":
        plan.conflicts.append((obj, choice.series))
        age = stored_age(obj.owned, now)
        if obj.owned and (age is None or age > settings.max_age_s):
            plan.expire(obj)
        return
    if choice.outcome == "none":
        if choice.newest_s is not None and now - choice.newest_s <= settings.max_age_s:
            plan.not_fresh.append(obj)
        elif obj.owned:
            plan.expire(obj)
        elif choice.measured_elsewhere:
            plan.not_fresh.append(obj)
        return
    [chosen] = choice.series
    power_refused, energy_refused, why = implausible(obj.kind, chosen.power_w, energy_kwh, settings)
    if why:
        plan.refused.append((obj, why))
    if power_refused:
        if obj.owned:
            plan.writes.append(
                PlannedWrite(obj, collections.OrderedDict(), sorted(obj.owned), "refuse")
            )
        return
    desired = desired_attributes(
        obj.kind,
        Sample(chosen.power_w, chosen.newest_s),
        None if energy_refused else energy_kwh,
        co2e_g,
    )
    if needs_write(obj.owned, desired, now, settings, power_ceiling(obj.kind, settings)):
        removed = [name for name in OWNED_ATTRIBUTES if name in obj.owned and name not in desired]
        plan.writes.append(PlannedWrite(obj, desired, removed, "write"))
    else:
        plan.unchanged.append(obj)


# --------------------------------------------------------------------------- runs


class Tally:
    """What the updates of one run did: objects written (by kind), expired, failed."""

    def __init__(self):
        self.written = collections.Counter()
        self.expired = 0
        self.failed = []

    def count(self, write):
        if write.reason == "expire":
            self.expired += 1
        elif write.reason in ("write", "remove"):
            self.written[write.obj.kind] += 1

    def written_text(self):
        hosts, vms = self.written["host"], self.written["VM"]
        return "%d (%d host%s, %d VM%s)" % (
            hosts + vms,
            hosts,
            "" if hosts == 1 else "s",
            vms,
            "" if vms == 1 else "s",
        )


def render_write(write):
    return render_template(write.attributes, write.removed)


def apply_writes(client, writes, log, verb):
    """Send one merge-mode update per planned write; return a Tally.

    A refused object is named and the others are still written; once oned stops answering,
    the remaining objects are reported as not written instead of waiting on each.
    """
    tally = Tally()
    for index, write in enumerate(writes):
        try:
            client.call(update_method(write.obj), write.obj.id, render_write(write), UPDATE_MERGE)
        except OneFault as fault:
            tally.failed.append(write.obj)
            log.error("%s: not %s: %s" % (label(write.obj), verb, fault))
        except OneUnreachable as error:
            rest = writes[index:]
            tally.failed.extend(item.obj for item in rest)
            log.error(
                "%s; %d object(s) not %s: %s"
                % (
                    error,
                    len(rest),
                    verb,
                    ", ".join(label(item.obj) for item in rest[:10])
                    + (", ..." if len(rest) > 10 else ""),
                )
            )
            break
        else:
            tally.count(write)
    return tally


STATUS = (
    "status: %s %s, unchanged %d, not fresh %d, expired %d, refused %d, conflicts %d, "
    "not in OpenNebula %d, failed %d"
)


def run_sync(settings, log, dry_run=False):
    """One sync run; returns the exit status (0: nothing failed).

    Refused figures and conflicts are reported as errors but do not fail the run: the sync
    did what it is for, keeping them out of OpenNebula; the data needs looking at.
    """
    now = time.time()
    prometheus = Prometheus(settings.prometheus_url, settings.timeout_s, now)
    try:
        host_measured = measure(prometheus, "host", settings)
        vm_measured = measure(prometheus, "VM", settings)
        client = connect(settings, log)
        hosts, vms = read_pools(client, settings)
    except SyncError as error:
        log.error(error)
        log.info(STATUS % ("written", "0", 0, 0, 0, 0, 0, 0, 0) + "; run aborted, nothing written")
        return 1
    plan = plan_sync(hosts, vms, host_measured, vm_measured, now, settings)
    report_plan(plan, settings, log)
    if dry_run:
        for write in plan.writes:
            log.info(describe_write(write))
        tally = Tally()
        for write in plan.writes:
            tally.count(write)
        verb = "would write"
    else:
        tally = apply_writes(client, plan.writes, log, "written")
        verb = "written"
    log.info(
        STATUS
        % (
            verb,
            tally.written_text(),
            len(plan.unchanged),
            len(plan.not_fresh),
            tally.expired,
            len(plan.refused),
            len(plan.conflicts),
            len(plan.unknown),
            len(tally.failed),
        )
    )
    return 1 if tally.failed else 0


def report_plan(plan, settings, log):
    """One line per kind of object the run does not simply write or leave unchanged."""
    if plan.not_fresh:
        log.info(
            "not fresh (no current power sample on its host in the last %d s), values kept "
            "until there is none for %d s: %s"
            % (settings.interval_s, settings.max_age_s, _names(plan.not_fresh))
        )
    if plan.expired:
        log.info(
            "expired (no power sample for more than %d s, or none it can be told from), "
            "values removed: %s" % (settings.max_age_s, _names(plan.expired))
        )
    if plan.refused:
        log.error(
            "implausible figures refused, not written and the object's values removed "
            "(a refused energy alone is only left out): %s"
            % "; ".join("%s: %s" % (label(obj), why) for obj, why in plan.refused[:20])
        )
    if plan.conflicts:
        log.error(
            "conflicting series, not written (values removed once older than %d s): %s"
            % (
                settings.max_age_s,
                "; ".join(
                    "%s: %d series at once (on host %s)"
                    % (label(obj), len(series), ", ".join(str(item.host_id) for item in series))
                    for obj, series in plan.conflicts[:20]
                ),
            )
        )
    if plan.ignored:
        log.error(
            "series whose ID label is not a canonical decimal ID, ignored: %s"
            % ", ".join(plan.ignored[:20])
        )
    if plan.unknown:
        log.info("measured but not in OpenNebula, skipped: %s" % ", ".join(plan.unknown[:20]))


def describe_write(write):
    """The dry run's line for one planned update."""
    if write.reason == "write":
        text = "would write %s: %s" % (
            label(write.obj),
            " ".join("%s=%s" % item for item in write.attributes.items()),
        )
        return text + ("; remove %s" % " ".join(write.removed) if write.removed else "")
    why = {"expire": "expired", "refuse": "refused"}[write.reason]
    return "would remove from %s (%s): %s" % (label(write.obj), why, " ".join(write.removed))


def run_removal(settings, log):
    """Delete the owned attributes from every host and VM carrying them; exit status."""
    try:
        client = connect(settings, log)
        hosts, vms = read_pools(client, settings)
    except SyncError as error:
        log.error(error)
        log.info("status: removed from 0, failed 0; run aborted, nothing changed")
        return 1
    carrying = [obj for pool in (hosts, vms) for _, obj in sorted(pool.items()) if obj.owned]
    writes = [
        PlannedWrite(obj, collections.OrderedDict(), sorted(obj.owned), "remove")
        for obj in carrying
    ]
    tally = apply_writes(client, writes, log, "cleaned")
    log.info("status: removed from %s, failed %d" % (tally.written_text(), len(tally.failed)))
    return 1 if tally.failed else 0


def _names(objects, limit=20):
    text = ", ".join(label(obj) for obj in objects[:limit])
    return text + (", ... (%d in all)" % len(objects) if len(objects) > limit else "")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Write each OpenNebula host's and VM's power and 24 h energy, read "
        "from Prometheus, into their templates (SCAPHANDRE_* attributes).",
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="INI file with a [%s] section (default %s)" % (CONFIG_SECTION, DEFAULT_CONFIG),
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--dry-run",
        action="store_true",
        help="read everything, print what would be written, write nothing",
    )
    action.add_argument(
        "--remove-attributes",
        action="store_true",
        help="delete the SCAPHANDRE_* attributes this program writes from "
        "every host and VM, then exit",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    log = Log()
    try:
        settings = load_settings(args.config)
        if args.remove_attributes:
            return run_removal(settings, log)
        return run_sync(settings, log, dry_run=args.dry_run)
    except SyncError as error:
        log.error(error)
        return 1
    except Exception as error:  # noqa: BLE001 - one redacted line, never a traceback with values
        frame = _innermost_frame(error)
        log.error("internal error (%s at line %s): %s" % (type(error).__name__, frame, error))
        return 2


def _innermost_frame(error):
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    return trace.tb_lineno if trace is not None else "?"


if __name__ == "__main__":
    sys.exit(main())
