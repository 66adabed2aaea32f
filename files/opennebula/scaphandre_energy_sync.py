#!/usr/bin/env python3
"""scaphandre-energy-sync: write each host's and VM's power into OpenNebula.

Run on the Prometheus server (usually the OpenNebula frontend) by a systemd timer.
Each run reads from Prometheus' HTTP API the power of every hypervisor and VM averaged
over the sync interval and their energy over the last 24 h (the recording rules
one_host:power_watts, one_vm:power_watts, one_host:energy_kwh:24h, one_vm:energy_kwh:24h),
then writes them through oned's XML-RPC API as attributes of the host's TEMPLATE and of the
VM's USER_TEMPLATE, so that SCHED_RANK / SCHED_REQUIREMENTS can use them:

  SCAPHANDRE_POWER_W          mean power over the last interval_s, watts, rounded to 0.1 W
  SCAPHANDRE_ENERGY_KWH_24H   energy over the last 24 hours, kWh, rounded to 0.001 kWh
  SCAPHANDRE_SAMPLE_TIME      unix time (whole seconds, UTC) of the newest power sample
                              behind the values written

Rules (all thresholds from the config file):
  - fresh: an object is written only when Prometheus holds power samples for it from the
    last interval_s (the mean is of those), a VM only from the host OpenNebula says it
    runs on now; older values are left as they are (SAMPLE_TIME tells their age);
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

--remove-attributes deletes the three attributes from every host and VM carrying them
(merge-mode update with the empty vector form ATTR = [], which oned treats as a deletion:
no other attribute is rewritten). Only Python 3's standard library is needed (3.6+).
"""

import argparse
import collections
import configparser
import http.client
import json
import math
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
import xml.parsers.expat
import xmlrpc.client

PROGRAM = "scaphandre-energy-sync"
DEFAULT_CONFIG = "/etc/one/scaphandre-energy-sync.conf"
CONFIG_SECTION = "scaphandre-energy-sync"

POWER_ATTRIBUTE = "SCAPHANDRE_POWER_W"
ENERGY_ATTRIBUTE = "SCAPHANDRE_ENERGY_KWH_24H"
SAMPLE_TIME_ATTRIBUTE = "SCAPHANDRE_SAMPLE_TIME"
OWNED_ATTRIBUTES = (POWER_ATTRIBUTE, ENERGY_ATTRIBUTE, SAMPLE_TIME_ATTRIBUTE)

POWER_DECIMALS = 1
ENERGY_DECIMALS = 3

DEFAULT_SETTINGS = collections.OrderedDict([
    ("prometheus_url", "http://127.0.0.1:9090"),
    ("one_xmlrpc", "http://localhost:2633/RPC2"),
    ("one_auth_file", "/var/lib/one/.one/one_auth"),
    ("interval_s", "300"),
    ("threshold_percent", "2"),
    ("threshold_watts", "1"),
    ("threshold_kwh", "0.01"),
    ("refresh_s", "3600"),
    ("timeout_s", "30"),
])

# oned's XML-RPC conventions (include/Request.h, PoolSQL.h, the XML-RPC API reference).
ONE_AUTHENTICATION = 0x0100
ONE_AUTHORIZATION = 0x0200
ONE_NO_EXISTS = 0x0400
POOL_FILTER_ALL = -2        # every VM, whoever owns it
POOL_RANGE_UNBOUNDED = -1   # start/end ID: no bound
VM_STATE_NOT_DONE = -1      # every state but DONE
UPDATE_MERGE = 1            # 0 would replace the whole template

Settings = collections.namedtuple("Settings", list(DEFAULT_SETTINGS) + ["source"])
# One measured series: mean power over the interval and the time of its newest sample.
Sample = collections.namedtuple("Sample", "power_w last_sample_s")
# A host or VM as oned lists it, reduced to what the sync needs.
OneObject = collections.namedtuple(
    "OneObject", "kind id name owned current_host_id")
PlannedWrite = collections.namedtuple("PlannedWrite", "obj attributes")


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
        # Masking a very short password would garble every line for no protection.
        if secret and len(secret) >= 4:
            self.secrets.append(secret)

    def redact(self, text):
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _emit(self, name, priority, text):
        stream = getattr(sys, name)
        line = self.redact(" ".join(str(text).split()))
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
        raise SyncError("cannot read the configuration %s: %s" % (path, error.strerror))
    except (configparser.Error, UnicodeDecodeError) as error:
        raise SyncError("configuration %s is not a valid INI file: %s"
                        % (path, " ".join(str(error).split())))
    if not parser.has_section(CONFIG_SECTION):
        raise SyncError("configuration %s has no [%s] section" % (path, CONFIG_SECTION))
    raw = dict(DEFAULT_SETTINGS)
    for key, value in parser.items(CONFIG_SECTION):
        if key not in DEFAULT_SETTINGS:
            raise SyncError("configuration %s: unknown setting %r; known settings: %s"
                            % (path, key, ", ".join(DEFAULT_SETTINGS)))
        raw[key] = value.strip()
    return Settings(
        prometheus_url=_url(path, "prometheus_url", raw["prometheus_url"]).rstrip("/"),
        one_xmlrpc=_url(path, "one_xmlrpc", raw["one_xmlrpc"]),
        one_auth_file=_non_empty(path, "one_auth_file", raw["one_auth_file"]),
        # Under a minute a window may hold no sample of a rule evaluated once a minute.
        interval_s=int(_number(path, "interval_s", raw["interval_s"], 60, 86400, whole=True)),
        threshold_percent=_number(path, "threshold_percent", raw["threshold_percent"], 0, 100),
        threshold_watts=_number(path, "threshold_watts", raw["threshold_watts"], 0, 1e6),
        threshold_kwh=_number(path, "threshold_kwh", raw["threshold_kwh"], 0, 1e6),
        refresh_s=int(_number(path, "refresh_s", raw["refresh_s"], 0, 10 ** 7, whole=True)),
        timeout_s=_number(path, "timeout_s", raw["timeout_s"], 1, 3600),
        source=path,
    )


def _url(path, key, value):
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SyncError("configuration %s: %s is %r, not an http(s) URL" % (path, key, value))
    if parsed.username or parsed.password:
        raise SyncError("configuration %s: %s must not hold credentials; OpenNebula's go "
                        "in one_auth_file" % (path, key))
    return value


def _non_empty(path, key, value):
    if not value:
        raise SyncError("configuration %s: %s is empty" % (path, key))
    return value


def _number(path, key, value, lowest, highest, whole=False):
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        number = float("nan")
    if not (lowest <= number <= highest):
        kind = "a whole number" if whole else "a number"
        raise SyncError("configuration %s: %s is %r: it must be %s from %s to %s"
                        % (path, key, value, kind, lowest, highest))
    return number


def read_session(path):
    """Return "user:password" from the first line of the credentials file.

    A UTF-8 BOM and surrounding blanks are ignored. Raises SyncError naming the file (never
    its content) when it is unreadable or not of the form user:password.
    """
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline(65536)
    except OSError as error:
        raise SyncError("cannot read OpenNebula credentials from %s: %s; the service user "
                        "must be able to read it (one_auth_file)" % (path, error.strerror))
    try:
        session = first_line.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise SyncError("OpenNebula credentials file %s is not UTF-8 text: its first line "
                        "must be user:password" % path) from None
    user, separator, password = session.partition(":")
    if not separator or not user.strip() or not password:
        raise SyncError("OpenNebula credentials file %s is malformed: its first line must "
                        "be user:password" % path)
    return session


# --------------------------------------------------------------------------- Prometheus


def newest_sample_query(metric, interval_s):
    """PromQL for the time of each series' newest sample in the window.

    timestamp() of a selector is the time of the sample itself: at the query time it is
    the newest sample there is (within Prometheus' 5-minute lookback), the last one the
    mean over the window is made of. A subquery sees samples only at its steps (every
    evaluation interval), so it alone would miss a sample taken after its last step; it
    stands in only for series whose newest sample is beyond the lookback, in windows
    longer than it.
    """
    return "timestamp(%s) or max_over_time(timestamp(%s)[%ds:])" % (metric, metric, interval_s)


def host_queries(interval_s):
    """PromQL for hosts: (mean power, newest sample time, 24 h energy)."""
    return (
        "avg_over_time(one_host:power_watts[%ds])" % interval_s,
        newest_sample_query("one_host:power_watts", interval_s),
        # One host is one target: max only guards against a second job scraping it.
        "max by (one_host_id) (one_host:energy_kwh:24h)",
    )


def vm_queries(interval_s):
    """PromQL for VMs: (mean power, newest sample time, 24 h energy)."""
    return (
        "avg_over_time(one_vm:power_watts[%ds])" % interval_s,
        newest_sample_query("one_vm:power_watts", interval_s),
        # A VM that migrated today drew energy on each host it ran on: add them up.
        "sum by (one_vm_id) (one_vm:energy_kwh:24h)",
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
        """Return [(labels, value)] of an instant vector; finite values only.

        Raises SyncError naming Prometheus' URL and the query when it cannot answer.
        """
        body = urllib.parse.urlencode({"query": promql, "time": "%.3f" % self.at})
        request = urllib.request.Request(
            self.url + "/api/v1/query", data=body.encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"})
        where = "Prometheus at %s" % self.url
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            raise SyncError("%s rejected the query %s: HTTP %d %s"
                            % (where, promql, error.code, _prometheus_error(error)))
        except urllib.error.URLError as error:
            raise SyncError("%s is unreachable: %s; check prometheus_url and that Prometheus "
                            "runs" % (where, _reason(error.reason, self.timeout_s)))
        except (OSError, http.client.HTTPException) as error:
            raise SyncError("%s is unreachable: %s" % (where, _reason(error, self.timeout_s)))
        try:
            document = json.loads(payload.decode("utf-8"))
            if document.get("status") != "success":
                raise ValueError(document.get("error", "status is not success"))
            data = document["data"]
            if data["resultType"] != "vector":
                raise ValueError("result type %s, not vector" % data["resultType"])
            rows = [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
            raise SyncError("%s gave no usable answer to %s: %s"
                            % (where, promql, " ".join(str(error).split())[:200]))
        return [(labels, value) for labels, value in rows if math.isfinite(value)]


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


def _object_id(labels, name):
    value = labels.get(name, "")
    return int(value) if value.isdecimal() else None


def measured_series(power_rows, last_rows):
    """Join mean power and newest-sample time by series: [(labels, Sample)].

    A series with a sample time but no mean (nothing in the window) gets power_w None:
    it is known to Prometheus but not fresh.
    """
    power_by_series = {_series_key(labels): value for labels, value in power_rows}
    joined = []
    for labels, last in last_rows:
        joined.append((labels, Sample(power_by_series.get(_series_key(labels)), last)))
    return joined


def host_measurements(prometheus, interval_s):
    """Return ({host_id: Sample}, {host_id: kWh}); a host seen twice keeps its newest series."""
    power_query, last_query, energy_query = host_queries(interval_s)
    samples = {}
    for labels, sample in measured_series(prometheus.query(power_query),
                                          prometheus.query(last_query)):
        host_id = _object_id(labels, "one_host_id")
        if host_id is not None and _better(sample, samples.get(host_id)):
            samples[host_id] = sample
    return samples, _energy_by_id(prometheus.query(energy_query), "one_host_id")


def vm_measurements(prometheus, interval_s):
    """Return ({vm_id: {host_id: Sample}}, {vm_id: kWh}).

    A VM keeps one series per host it was measured on (two while it migrates); the sync
    uses the one on the host OpenNebula says it runs on.
    """
    power_query, last_query, energy_query = vm_queries(interval_s)
    samples = {}
    for labels, sample in measured_series(prometheus.query(power_query),
                                          prometheus.query(last_query)):
        vm_id = _object_id(labels, "one_vm_id")
        host_id = _object_id(labels, "one_host_id")
        if vm_id is None or host_id is None:
            continue
        if _better(sample, samples.setdefault(vm_id, {}).get(host_id)):
            samples[vm_id][host_id] = sample
    return samples, _energy_by_id(prometheus.query(energy_query), "one_vm_id")


def _better(sample, known):
    """True when sample should replace known: fresh beats not fresh, then newer wins."""
    if known is None:
        return True
    return ((sample.power_w is not None, sample.last_sample_s)
            > (known.power_w is not None, known.last_sample_s))


def _energy_by_id(rows, label):
    energy = {}
    for labels, value in rows:
        object_id = _object_id(labels, label)
        if object_id is not None:
            energy[object_id] = value
    return energy


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
            raise OneFault("%s fault %s: %s" % (method, fault.faultCode, fault.faultString), None)
        except xmlrpc.client.ProtocolError as error:
            raise OneUnreachable("%s answered %s with HTTP %s %s; check one_xmlrpc"
                                 % (where, method, error.errcode, error.errmsg))
        except (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError, ValueError):
            raise OneUnreachable("%s did not answer %s in XML-RPC: check that one_xmlrpc "
                                 "points to oned's endpoint" % (where, method))
        except (OSError, http.client.HTTPException) as error:
            raise OneUnreachable("%s is unreachable (%s): %s; check one_xmlrpc and that oned "
                                 "runs" % (where, method, _reason(error, self._timeout_s)))
        if not isinstance(reply, (list, tuple)) or len(reply) < 3 or not isinstance(reply[0], bool):
            raise OneUnreachable("%s answered %s with something that is not oned's reply; "
                                 "check one_xmlrpc" % (where, method))
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
        vms = parse_pool(client.call("one.vmpool.infoextended", POOL_FILTER_ALL,
                                     POOL_RANGE_UNBOUNDED, POOL_RANGE_UNBOUNDED,
                                     VM_STATE_NOT_DONE),
                         "VM", "USER_TEMPLATE", "VM")
    except OneFault as fault:
        raise SyncError(_pool_fault_message(fault, client, settings))
    return hosts, vms


def _pool_fault_message(fault, client, settings):
    if fault.code == ONE_AUTHENTICATION:
        return ("OpenNebula at %s refused the credentials of user %r from %s: check the "
                "password there" % (client.url, client.user, settings.one_auth_file))
    if fault.code == ONE_AUTHORIZATION:
        return ("OpenNebula at %s does not let user %r (from %s) list hosts and VMs: %s; "
                "use oneadmin's credentials" % (client.url, client.user,
                                                settings.one_auth_file, fault))
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
        raise OneUnreachable("oned's %s pool reply is not XML: %s" % (kind, error))
    objects = {}
    for node in root.findall(element):
        object_id = int(node.findtext("ID", "-1"))
        objects[object_id] = OneObject(
            kind=kind, id=object_id, name=node.findtext("NAME", ""),
            owned=_owned_attributes(node.find(template_element)),
            current_host_id=_current_host(node) if kind == "VM" else object_id)
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


def render_template(attributes):
    """OpenNebula template text for plain values (digits and dots only, quoted)."""
    return "".join('%s = "%s"\n' % (name, value) for name, value in attributes.items())


def removal_template(names):
    """Merge-mode template deleting each named attribute: oned drops an attribute whose
    new value is an empty vector (NAME = []) and rewrites nothing else."""
    return "".join("%s = []\n" % name for name in names)


def update_method(obj):
    return "one.host.update" if obj.kind == "host" else "one.vm.update"


# --------------------------------------------------------------------------- planning


def desired_attributes(sample, energy_kwh):
    """The attribute values to write for a fresh sample, rounded as documented."""
    attributes = collections.OrderedDict()
    attributes[POWER_ATTRIBUTE] = "%.*f" % (POWER_DECIMALS, sample.power_w)
    if energy_kwh is not None:
        attributes[ENERGY_ATTRIBUTE] = "%.*f" % (ENERGY_DECIMALS, energy_kwh)
    attributes[SAMPLE_TIME_ATTRIBUTE] = "%d" % int(sample.last_sample_s)
    return attributes


def moved(stored, new_text, floor, percent):
    """True when new_text differs from the stored text by more than max(floor, percent %)."""
    try:
        old = float(stored)
    except (TypeError, ValueError):
        return True
    if not math.isfinite(old):
        return True
    return abs(float(new_text) - old) > max(floor, abs(old) * percent / 100.0)


def needs_write(owned, desired, now, settings):
    """True when the stored values are missing, moved beyond the thresholds, or too old."""
    if moved(owned.get(POWER_ATTRIBUTE), desired[POWER_ATTRIBUTE],
             settings.threshold_watts, settings.threshold_percent):
        return True
    if ENERGY_ATTRIBUTE in desired and moved(owned.get(ENERGY_ATTRIBUTE),
                                             desired[ENERGY_ATTRIBUTE],
                                             settings.threshold_kwh, settings.threshold_percent):
        return True
    stored_time = owned.get(SAMPLE_TIME_ATTRIBUTE) or ""
    if not stored_time.isdecimal():
        return True
    return now - int(stored_time) > settings.refresh_s


class Plan:
    """What one run will do, decided before any write."""

    def __init__(self):
        self.writes = []        # [PlannedWrite]
        self.unchanged = []     # [OneObject]
        self.not_fresh = []     # [OneObject]: known to Prometheus or carrying values, no mean
        self.unknown = []       # ["host 7"]: fresh in Prometheus, absent from OpenNebula


def plan_sync(hosts, vms, host_samples, host_energy, vm_samples, vm_energy, now, settings):
    """Return the Plan for the pools and the measurements; pure, no I/O."""
    plan = Plan()
    for pool, samples, energy in ((hosts, host_samples, host_energy),
                                  (vms, vm_samples, vm_energy)):
        for object_id in sorted(pool):
            obj = pool[object_id]
            sample = _sample_on_current_host(obj, samples.get(object_id))
            if sample is None or sample.power_w is None:
                if object_id in samples or obj.owned:
                    plan.not_fresh.append(obj)
                continue
            desired = desired_attributes(sample, energy.get(object_id))
            if needs_write(obj.owned, desired, now, settings):
                plan.writes.append(PlannedWrite(obj, desired))
            else:
                plan.unchanged.append(obj)
    for kind, pool, samples in (("host", hosts, host_samples), ("VM", vms, vm_samples)):
        for object_id in sorted(set(samples) - set(pool)):
            if _is_fresh_anywhere(samples[object_id]):
                plan.unknown.append("%s %d" % (kind, object_id))
    return plan


def _sample_on_current_host(obj, measured):
    if measured is None or obj.kind == "host":
        return measured
    return measured.get(obj.current_host_id)


def _is_fresh_anywhere(measured):
    samples = measured.values() if isinstance(measured, dict) else [measured]
    return any(sample.power_w is not None for sample in samples)


# --------------------------------------------------------------------------- runs


class Tally:
    def __init__(self):
        self.written = collections.Counter()
        self.failed = []

    def written_text(self):
        hosts, vms = self.written["host"], self.written["VM"]
        return "%d (%d host%s, %d VM%s)" % (hosts + vms, hosts, "" if hosts == 1 else "s",
                                           vms, "" if vms == 1 else "s")


def apply_writes(client, writes, render, log, verb):
    """Send one merge-mode update per planned write; return a Tally.

    A refused object is named and the others are still written; once oned stops answering,
    the remaining objects are reported as not written instead of waiting on each.
    """
    tally = Tally()
    for index, write in enumerate(writes):
        try:
            client.call(update_method(write.obj), write.obj.id, render(write), UPDATE_MERGE)
        except OneFault as fault:
            tally.failed.append(write.obj)
            log.error("%s: not %s: %s" % (label(write.obj), verb, fault))
        except OneUnreachable as error:
            rest = writes[index:]
            tally.failed.extend(item.obj for item in rest)
            log.error("%s; %d object(s) not %s: %s" % (
                error, len(rest), verb, ", ".join(label(item.obj) for item in rest[:10])
                + (", ..." if len(rest) > 10 else "")))
            break
        else:
            tally.written[write.obj.kind] += 1
    return tally


def run_sync(settings, log, dry_run=False):
    """One sync run; returns the exit status (0: nothing failed)."""
    now = time.time()
    prometheus = Prometheus(settings.prometheus_url, settings.timeout_s, now)
    try:
        host_samples, host_energy = host_measurements(prometheus, settings.interval_s)
        vm_samples, vm_energy = vm_measurements(prometheus, settings.interval_s)
        client = connect(settings, log)
        hosts, vms = read_pools(client, settings)
    except SyncError as error:
        log.error(error)
        log.info("status: written 0, unchanged 0, not fresh 0, not in OpenNebula 0, failed 0;"
                 " run aborted, nothing written")
        return 1
    plan = plan_sync(hosts, vms, host_samples, host_energy, vm_samples, vm_energy, now, settings)
    if plan.not_fresh:
        log.info("not fresh (no power sample in the last %d s), left as they are: %s" % (
            settings.interval_s, _names(plan.not_fresh)))
    if plan.unknown:
        log.info("measured but not in OpenNebula, skipped: %s" % ", ".join(plan.unknown[:20]))
    if dry_run:
        for write in plan.writes:
            log.info("would write %s: %s" % (label(write.obj), " ".join(
                "%s=%s" % item for item in write.attributes.items())))
        tally = Tally()
        tally.written.update(write.obj.kind for write in plan.writes)
        verb = "would write"
    else:
        tally = apply_writes(client, plan.writes,
                             lambda write: render_template(write.attributes), log, "written")
        verb = "written"
    log.info("status: %s %s, unchanged %d, not fresh %d, not in OpenNebula %d, failed %d" % (
        verb, tally.written_text(), len(plan.unchanged), len(plan.not_fresh),
        len(plan.unknown), len(tally.failed)))
    return 1 if tally.failed else 0


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
    writes = [PlannedWrite(obj, None) for obj in carrying]
    tally = apply_writes(client, writes,
                         lambda write: removal_template(sorted(write.obj.owned)),
                         log, "cleaned")
    log.info("status: removed from %s, failed %d" % (tally.written_text(), len(tally.failed)))
    return 1 if tally.failed else 0


def _names(objects, limit=20):
    text = ", ".join(label(obj) for obj in objects[:limit])
    return text + (", ... (%d in all)" % len(objects) if len(objects) > limit else "")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Write each OpenNebula host's and VM's power and 24 h energy, read "
                    "from Prometheus, into their templates (SCAPHANDRE_* attributes).")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="INI file with a [%s] section (default %s)"
                             % (CONFIG_SECTION, DEFAULT_CONFIG))
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--dry-run", action="store_true",
                        help="read everything, print what would be written, write nothing")
    action.add_argument("--remove-attributes", action="store_true",
                        help="delete the SCAPHANDRE_* attributes this program writes from "
                             "every host and VM, then exit")
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
