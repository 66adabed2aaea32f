"""TEST DOUBLE: a small simulator of OpenNebula's XML-RPC API (oned), for tests and the demo.

OpenNebula cannot be installed on the test machine, so this serves the calls the product
makes, with XML shaped like OpenNebula 6.x/7.x replies (the fields pyone's generated bindings
read) and oned's reply envelope `[success, body_or_message, error_code, ...]`, including its
failures (authentication, unknown object, wrong update type, template parse errors):

  one.hostpool.info, one.host.info          HOST_POOL / HOST
  one.host.update(id, template, type)       TEMPLATE; type 0 replaces it, 1 merges into it
  one.vmpool.info(filter, start, end, state[, query])
                                            VM_POOL with oned's short VM body (a reduced
                                            TEMPLATE and USER_TEMPLATE, short HISTORY)
  one.vmpool.infoextended(same arguments)   VM_POOL with the full VM body
  one.vm.info(id[, decrypt])                VM (full body)
  one.vm.update(id, template, type)         USER_TEMPLATE; 0 replaces, 1 merges

Templates follow oned's rules (src/parsers/template_syntax.y, Template::merge): text
(`NAME = "value"`, `NAME = [ KEY = value, ... ]`) or XML; names are upper-cased and values
trimmed; a merge first erases every attribute named in the new template, then adds the new
ones except empty vectors (`NAME = []`), which is how oned deletes an attribute in merge
mode. An update with no type is a replace, as in oned. After a host update, as oned does, a
non-empty IM_MAD / VM_MAD in the template becomes the host's driver and both stay in the
template (a replace keeps them).
Pools list objects by ID in oned's default API_LIST_ORDER, descending (`list_order="ASC"` for
an oned.conf that says ASC). Success replies are `[true, body, 0]`; failures
`[false, "[method] message", code, object ID or -1, -1]`.
tests/real_opennebula/check_against_oned.py compares all this with a real oned.
It is never used by the product code.

Fault modes (constructor `mode=` or `sim.set_mode`):
  ok       normal answers
  garbage  HTTP 200 with a body that is not XML-RPC at all
  html     HTTP 200 with an HTML page (what pointing ONE_XMLRPC at a web UI gives)
  hang     sleep `hang_s` seconds (bounded) before answering, to exercise client timeouts
  http500  HTTP 500 Internal Server Error

Simulator-only XML-RPC methods (never part of OpenNebula's API, hence the `sim.` prefix):
  sim.calls() -> {method: count}   sim.reset() -> True   sim.set_mode(mode) -> True

VMs are dicts like
  {"id": 42, "name": "web", "host_id": 3, "hostname": "hv1", "state": 3, "lcm_state": 3,
   "template": {...}, "user_template": {"LABELS": "prod"}}
(state 3 / lcm_state 3 is ACTIVE/RUNNING; a VM without host_id never ran). Template values
are strings, lists of strings (a repeated attribute) or dicts (a vector attribute).
Python-side hooks (`add_hook`) run after a method computed its answer and before the client
receives it: a test can delete a VM "between the client's query and its write".

TLS: `tls_context=` (a server-side ssl.SSLContext) serves https on the same port.

Process mode (for the end-to-end test bed and the demo):
  python -m tests.doubles.one_api_simulator --port 26330 --hosts FILE.yml \
      --user oneadmin --password-file F [--vms VMS.yml]
FILE.yml is a list of hosts (or {"hosts": [...]}) like
  {"id": 3, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2}
(a host without a hostname is one oned never monitored: its TEMPLATE holds only the drivers
and RESERVED_CPU/RESERVED_MEM, as a new host's does; `"monitored": true` overrides) and is
re-read whenever its mtime changes (write it atomically: temp file + rename); host
templates written through one.host.update survive a re-read. VMS.yml (a list of VMs, or
{"vms": [...]}) is read once at start.
It prints one line "listening on URL" when ready and never prints the password.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

MODES = ("ok", "garbage", "html", "hang", "http500")
# XML-RPC fault the xmlrpc-c layer under oned answers when an argument has the wrong type.
XMLRPC_TYPE_ERROR = -501
MAX_HANG_S = 30.0  # "hang" is bounded so a forgotten simulator thread always ends

# oned's error codes (include/Request.h)
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000


# --------------------------------------------------------------------------- XML


def _cdata(value: Any) -> str:
    """Wrap a template value in CDATA the way oned writes TEMPLATE attributes."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _text(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


# --------------------------------------------------------------------------- templates
#
# A template is a list of (NAME, value) pairs in insertion order, like oned's multimap of
# attributes: value is a str (single attribute) or a dict (vector attribute, KEY -> str).
# Rendering sorts by NAME (stable for repeated names), as std::multimap iterates.

Template = list  # list[tuple[str, str | dict[str, str]]]


class TemplateSyntaxError(ValueError):
    """The text is not an OpenNebula template (oned answers "Parse error: ...")."""


def template_from_mapping(values: dict) -> Template:
    """Template from the double's dict form: str, list (repeated) or dict (vector) values."""
    template: Template = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                template.append((name.upper(), {str(k): str(v) for k, v in item.items()}))
            else:
                template.append((name.upper(), str(item)))
    return template


def template_xml(tag: str, template: Template) -> str:
    """<TAG> with one element per attribute, values in CDATA, as oned's Template::to_xml."""
    elements = []
    for name, value in sorted(template, key=lambda attribute: attribute[0]):
        if isinstance(value, dict):
            inner = "".join(f"<{key}>{_cdata(item)}</{key}>" for key, item in sorted(value.items()))
            elements.append(f"<{name}>{inner}</{name}>")
        else:
            elements.append(f"<{name}>{_cdata(value)}</{name}>")
    return f"<{tag}>" + "".join(elements) + f"</{tag}>" if elements else f"<{tag}/>"


_NAME = re.compile(r"[A-Za-z0-9_]+")
_BLANKS_OR_COMMENTS = re.compile(r"(?:[ \t\n]+|[ \t]*#[^\n]*(?:\n|$))*")
_EQUAL_EMPTY = re.compile(r"[ \t]*=[ \t]*\n")
_EQUAL = re.compile(r"[ \t]*=[ \t]*")
_QUOTED = re.compile(r'"((?:\\"|[^"])*)"')
_BARE = re.compile(r"[^=#\s,\[\]]+")
_OPEN_BRACKET = re.compile(r"[ \t]*\[[ \t\n]*")
_CLOSE_BRACKET = re.compile(r"[ \t\n]*\][ \t\n]*")
_COMMA = re.compile(r"[ \t\n]*,[ \t\n]*")


def parse_template(text: str) -> Template:
    """Parse an update's template the way oned does: XML when it starts with '<', else text.

    Raises TemplateSyntaxError with oned's "Parse error" wording when it cannot.
    """
    if text[:1] == "<":
        return _parse_template_xml(text)
    return _TemplateTextParser(text).parse()


def _parse_template_xml(text: str) -> Template:
    """Template::from_xml: a child with only text is single, one with elements a vector."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise TemplateSyntaxError("Parse error: XML Template malformed.") from None
    template: Template = []
    for child in root:
        if len(child):
            vector = {sub.tag: (sub.text or "").strip() for sub in child if sub.text is not None}
            template.append((child.tag.upper(), vector))
        elif child.text is not None:
            template.append((child.tag.upper(), child.text.strip()))
    return template


class _TemplateTextParser:
    """oned's template text grammar (template_parser.l / template_syntax.y)."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def parse(self) -> Template:
        template: Template = []
        while True:
            self._skip(_BLANKS_OR_COMMENTS)
            if self.pos >= len(self.text):
                return template
            name = self._expect(_NAME, "VARIABLE").upper()
            if self._skip(_EQUAL_EMPTY):
                template.append((name, ""))
                continue
            self._expect(_EQUAL, "EQUAL")
            if self._skip(_OPEN_BRACKET):
                template.append((name, self._vector()))
            else:
                template.append((name, self._value()))

    def _vector(self) -> dict:
        vector: dict = {}
        if self._skip(_CLOSE_BRACKET):
            return vector  # NAME = [] : an empty vector, which a merge turns into a deletion
        while True:
            key = self._expect(_NAME, "VARIABLE").upper()
            self._expect(_EQUAL, "EQUAL")
            vector.setdefault(key, self._value())  # std::map::insert keeps the first
            if self._skip(_CLOSE_BRACKET):
                return vector
            self._expect(_COMMA, "COMMA or CBRACKET")

    def _value(self) -> str:
        line_end = self.text.find("\n", self.pos)
        rest_of_line = self.text[self.pos :] if line_end < 0 else self.text[self.pos : line_end]
        quoted = _QUOTED.match(self.text, self.pos)
        if "]]>" in rest_of_line and (
            quoted is None or quoted.end() - self.pos <= len(rest_of_line)
        ):
            self._fail("CCDATA")
        if quoted:
            self.pos = quoted.end()
            return quoted.group(1).replace('\\"', '"').strip()
        return self._expect(_BARE, "STRING").strip()

    def _skip(self, pattern: re.Pattern) -> bool:
        match = pattern.match(self.text, self.pos)
        if match and match.end() > self.pos:
            self.pos = match.end()
            return True
        return False

    def _expect(self, pattern: re.Pattern, what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if not match or match.end() == self.pos:
            self._fail(what)
        self.pos = match.end()
        return match.group(0)

    def _fail(self, what: str) -> None:
        line = self.text.count("\n", 0, self.pos) + 1
        if (
            what == "CCDATA"
        ):  # oned refuses "]]>" in a value (it would break its XML), saying no more
            raise TemplateSyntaxError("Parse error.")
        found = self.text[self.pos : self.pos + 1] or "end of file"
        raise TemplateSyntaxError(
            f"Parse error: syntax error, unexpected {found!r}, expecting {what} at line {line}"
        )


def merge_template(current: Template, new: Template) -> Template:
    """Template::merge: erase every attribute named in new, then add new's attributes,
    leaving out empty vectors (so `NAME = []` deletes NAME)."""
    names = {name for name, _ in new}
    kept = [(name, value) for name, value in current if name not in names]
    return kept + [(name, value) for name, value in new if value != {}]


def template_value(template: Template, name: str) -> Any:
    """The first value of NAME, or None."""
    for attribute, value in template:
        if attribute == name:
            return value
    return None


# --------------------------------------------------------------------------- hosts


def _host_share_xml(host: dict) -> str:
    """HOST_SHARE as oned 6.x/7.x writes it (capacity in KB and CPU percent)."""
    total_mem = int(host.get("total_mem_kb", 16 * 1024 * 1024))
    total_cpu = int(host.get("total_cpu", 800))
    running = len(host.get("vms", []))
    cores = "".join(
        f"<CORE><CPUS><![CDATA[{2 * i}:-1,{2 * i + 1}:-1]]></CPUS><DEDICATED><![CDATA[NO]]>"
        f"</DEDICATED><FREE><![CDATA[2]]></FREE><ID><![CDATA[{i}]]></ID></CORE>"
        for i in range(total_cpu // 200)
    )
    numa = (
        f"<NODE>{cores}<HUGEPAGE><PAGES><![CDATA[0]]></PAGES><SIZE><![CDATA[2048]]>"
        f"</SIZE><USAGE><![CDATA[0]]></USAGE></HUGEPAGE><MEMORY><DISTANCE><![CDATA[0]]>"
        f"</DISTANCE><TOTAL><![CDATA[{total_mem}]]></TOTAL><USAGE><![CDATA[0]]></USAGE>"
        f"</MEMORY><NODE_ID><![CDATA[0]]></NODE_ID></NODE>"
    )
    return (
        "<HOST_SHARE>"
        f"<MEM_USAGE>0</MEM_USAGE><CPU_USAGE>0</CPU_USAGE>"
        f"<TOTAL_MEM>{total_mem}</TOTAL_MEM><TOTAL_CPU>{total_cpu}</TOTAL_CPU>"
        f"<MAX_MEM>{total_mem}</MAX_MEM><MAX_CPU>{total_cpu}</MAX_CPU>"
        f"<RUNNING_VMS>{running}</RUNNING_VMS><VMS_THREAD>1</VMS_THREAD>"
        "<DATASTORES><DISK_USAGE>0</DISK_USAGE><FREE_DISK>400000</FREE_DISK>"
        "<MAX_DISK>500000</MAX_DISK><USED_DISK>100000</USED_DISK></DATASTORES>"
        f"<PCI_DEVICES/><NUMA_NODES>{numa}</NUMA_NODES>"
        "</HOST_SHARE>"
    )


def host_monitored(host: dict) -> bool:
    """Whether oned has had a probe of the host. HOSTNAME comes from the probes, so a host given
    without a hostname is one oned never monitored (just created, or never reached), unless
    `monitored` says otherwise."""
    return bool(host.get("monitored", bool(host.get("hostname"))))


def host_template(host: dict) -> Template:
    """The host's TEMPLATE: its stored one once updated, else what oned holds: the drivers and
    empty reservations from `onehost create`, and what the probes report once monitored."""
    if "template_attributes" in host:
        return list(host["template_attributes"])
    im_mad = host.get("im_mad", "kvm")
    attrs: dict[str, Any] = {
        "IM_MAD": im_mad,
        "RESERVED_CPU": "",
        "RESERVED_MEM": "",
        "VM_MAD": host.get("vm_mad", im_mad),
    }
    if host_monitored(host):
        attrs.update(
            {
                "ARCH": "x86_64",
                "CPUSPEED": "2400",
                "HYPERVISOR": im_mad,
                "MODELNAME": "Intel(R) Xeon(R) CPU (simulated)",
                "VERSION": "6.10.0",
            }
        )
        if host.get("hostname"):
            attrs["HOSTNAME"] = host["hostname"]
    attrs.update(host.get("template", {}))
    # a list stands for a repeated attribute (e.g. two HOSTNAME lines in the template)
    return template_from_mapping(attrs)


def updated_host(host: dict, new: Template, update_type: int) -> dict:
    """The host after one.host.update: the template replaced or merged, then, as oned's
    Host::post_update_template does, a non-empty IM_MAD / VM_MAD in it becomes the host's
    driver, and both are written back into the template (so a replace keeps them)."""
    host = dict(host)
    template = new if update_type == 0 else merge_template(host_template(host), new)
    drivers = {"IM_MAD": host.get("im_mad", "kvm")}
    drivers["VM_MAD"] = host.get("vm_mad", drivers["IM_MAD"])
    for name in drivers:
        value = template_value(template, name)
        if isinstance(value, str) and value:
            drivers[name] = value
    host["im_mad"], host["vm_mad"] = drivers["IM_MAD"], drivers["VM_MAD"]
    host["template_attributes"] = [
        (name, value) for name, value in template if name not in drivers
    ] + list(drivers.items())
    return host


def _template_xml(host: dict) -> str:
    return template_xml("TEMPLATE", host_template(host))


def _monitoring_xml(host: dict) -> str:
    """The last monitoring record, included in pool replies since OpenNebula 5.12."""
    if not host_monitored(host):
        return "<MONITORING/>"
    return (
        f"<MONITORING><TIMESTAMP>{int(time.time())}</TIMESTAMP><ID>{int(host['id'])}</ID>"
        "<CAPACITY><FREE_CPU>780</FREE_CPU><FREE_MEMORY>15000000</FREE_MEMORY>"
        "<USED_CPU>20</USED_CPU><USED_MEMORY>1777216</USED_MEMORY></CAPACITY>"
        "<SYSTEM><NETRX>123456</NETRX><NETTX>654321</NETTX></SYSTEM></MONITORING>"
    )


def host_xml(host: dict) -> str:
    """Return one <HOST> element shaped like oned's (element order as in host.xsd)."""
    im_mad = host.get("im_mad", "kvm")
    state = int(host.get("state", 2))
    vms = "".join(f"<ID>{int(vm)}</ID>" for vm in host.get("vms", []))
    return (
        "<HOST>"
        + _text("ID", int(host["id"]))
        + _text("NAME", host["name"])
        + _text("STATE", state)
        + _text("PREV_STATE", int(host.get("prev_state", state)))
        + f"<IM_MAD>{_cdata(im_mad)}</IM_MAD><VM_MAD>{_cdata(host.get('vm_mad', im_mad))}</VM_MAD>"
        + _text("CLUSTER_ID", int(host.get("cluster_id", 0)))
        + _text("CLUSTER", host.get("cluster", "default"))
        + _host_share_xml(host)
        + f"<VMS>{vms}</VMS>"
        + _template_xml(host)
        + _monitoring_xml(host)
        + "</HOST>"
    )


def host_pool_xml(hosts: list[dict], list_order: str = "DESC") -> str:
    """Return the HOST_POOL document one.hostpool.info answers (no namespace, like oned), hosts
    by ID in oned's API_LIST_ORDER (descending unless oned.conf says ASC)."""
    ordered = sorted(hosts, key=lambda host: int(host["id"]), reverse=list_order == "DESC")
    return "<HOST_POOL>" + "".join(host_xml(host) for host in ordered) + "</HOST_POOL>"


# --------------------------------------------------------------------------- VMs

VM_STATE_DONE = 6
VM_STATE_MAX = 11  # CLONING_FAILURE, the last VmState
_PERMISSIONS = (
    "<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A>"
    "<GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A>"
    "<OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>"
)


def vm_template(vm: dict) -> Template:
    """The VM's TEMPLATE (what oned derived from the VM template at instantiation)."""
    attrs: dict[str, Any] = {
        "AUTOMATIC_REQUIREMENTS": "!(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)",
        "CPU": "1",
        "MEMORY": "1024",
        "TM_MAD_SYSTEM": "",
        "VMID": str(int(vm["id"])),
    }
    attrs.update(vm.get("template", {}))
    return template_from_mapping(attrs)


def vm_user_template(vm: dict) -> Template:
    """The VM's USER_TEMPLATE: its stored one once updated, else the dict it was given."""
    if "user_template_attributes" in vm:
        return list(vm["user_template_attributes"])
    return template_from_mapping(vm.get("user_template", {}))


def _vm_history(vm: dict) -> list[dict]:
    """History records, oldest first: the given ones, or one on host_id when it is set."""
    if "history" in vm:
        return list(vm["history"])
    if vm.get("host_id") is None:
        return []
    return [
        {"seq": 0, "host_id": vm["host_id"], "hostname": vm.get("hostname", f"host{vm['host_id']}")}
    ]


def _history_xml(vm: dict, record: dict, short: bool) -> str:
    stime = int(vm.get("stime", 1_700_000_000))
    fields = [
        ("OID", int(vm["id"])),
        ("SEQ", int(record["seq"])),
        ("HOSTNAME", escape(str(record["hostname"]))),
        ("HID", int(record["host_id"])),
        ("CID", int(record.get("cluster_id", 0))),
    ]
    if short:
        fields += [("DS_ID", 0), ("VM_MAD", "kvm"), ("TM_MAD", "ssh"), ("ACTION", 0)]
    else:
        fields += [
            ("STIME", stime),
            ("ETIME", 0),
            ("VM_MAD", "kvm"),
            ("TM_MAD", "ssh"),
            ("DS_ID", 0),
            ("PLAN_ID", -1),
            ("ACTION_ID", -1),
            ("PSTIME", stime),
            ("PETIME", stime + 5),
            ("RSTIME", stime + 5),
            ("RETIME", 0),
            ("ESTIME", 0),
            ("EETIME", 0),
            ("ACTION", 0),
            ("UID", -1),
            ("GID", -1),
            ("REQUEST_ID", -1),
        ]
    return "<HISTORY>" + "".join(f"<{tag}>{value}</{tag}>" for tag, value in fields) + "</HISTORY>"


def _vm_header_xml(vm: dict, extended: bool) -> str:
    state = int(vm.get("state", 3))
    lcm_state = int(vm.get("lcm_state", 3 if state == 3 else 0))
    running = state == 3
    parts = [
        _text("ID", int(vm["id"])),
        _text("UID", int(vm.get("uid", 0))),
        _text("GID", int(vm.get("gid", 0))),
        _text("UNAME", vm.get("uname", "oneadmin")),
        _text("GNAME", vm.get("gname", "oneadmin")),
        _text("NAME", vm["name"]),
    ]
    if extended:
        parts.append(_PERMISSIONS)
    parts += [
        _text("LAST_POLL", int(time.time()) if running else 0),
        _text("STATE", state),
        _text("LCM_STATE", lcm_state),
    ]
    if extended:
        parts += [_text("PREV_STATE", state), _text("PREV_LCM_STATE", lcm_state)]
    parts += [
        _text("RESCHED", 0),
        _text("STIME", int(vm.get("stime", 1_700_000_000))),
        _text("ETIME", 0),
        _text("DEPLOY_ID", f"one-{int(vm['id'])}" if running else ""),
    ]
    return "".join(parts)


def vm_xml(vm: dict) -> str:
    """One <VM> element as one.vm.info and one.vmpool.infoextended give it (vm.xsd order)."""
    running = int(vm.get("state", 3)) == 3
    monitoring = (
        (
            f"<MONITORING><CPU>{_cdata('2.0')}</CPU><ID>{_cdata(int(vm['id']))}</ID>"
            f"<MEMORY>{_cdata('786432')}</MEMORY><TIMESTAMP>{_cdata(int(time.time()))}"
            "</TIMESTAMP></MONITORING>"
        )
        if running
        else "<MONITORING/>"
    )
    history = _vm_history(vm)
    records = (
        "<HISTORY_RECORDS>" + _history_xml(vm, history[-1], short=False) + "</HISTORY_RECORDS>"
        if history
        else "<HISTORY_RECORDS/>"
    )
    return (
        "<VM>"
        + _vm_header_xml(vm, extended=True)
        + monitoring
        + "<SCHED_ACTIONS></SCHED_ACTIONS>"
        + template_xml("TEMPLATE", vm_template(vm))
        + template_xml("USER_TEMPLATE", vm_user_template(vm))
        + records
        + "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS></BACKUP_IDS></BACKUPS></VM>"
    )


# oned's short body keeps only these USER_TEMPLATE attributes (VirtualMachineTemplate::to_xml_short).
_SHORT_USER_TEMPLATE = (
    "LABELS",
    "ERROR",
    "SCHED_MESSAGE",
    "SCHED_RANK",
    "SCHED_DS_RANK",
    "SCHED_REQUIREMENTS",
    "SCHED_DS_REQUIREMENTS",
    "USER_PRIORITY",
)


def vm_short_xml(vm: dict) -> str:
    """One <VM> element as one.vmpool.info gives it: oned's short body (vm_pool.xsd)."""
    template = vm_template(vm)
    short_template = "".join(
        f"<{name}>{escape(str(template_value(template, name) or ''))}</{name}>"
        for name in ("CPU", "MEMORY", "VCPU")
    )
    user_template = vm_user_template(vm)
    kept = "".join(
        f"<{name}>{escape(value)}</{name}>"
        for name in _SHORT_USER_TEMPLATE
        for value in [template_value(user_template, name)]
        if isinstance(value, str) and value
    )
    running = int(vm.get("state", 3)) == 3
    monitoring = (
        "<MONITORING><CPU>2.0</CPU><MEMORY>786432</MEMORY></MONITORING>"
        if running
        else "<MONITORING/>"
    )
    history = _vm_history(vm)
    records = (
        "<HISTORY_RECORDS>" + _history_xml(vm, history[-1], short=True) + "</HISTORY_RECORDS>"
        if history
        else "<HISTORY_RECORDS/>"
    )
    return (
        "<VM>"
        + _vm_header_xml(vm, extended=False)
        + f"<TEMPLATE>{short_template}</TEMPLATE>"
        + monitoring
        + (f"<USER_TEMPLATE>{kept}</USER_TEMPLATE>" if user_template else "<USER_TEMPLATE/>")
        + records
        + "</VM>"
    )


def validate_vms(vms: Any) -> list[dict]:
    """Return the VM list, or raise ValueError naming what is wrong with it."""
    if vms is None:
        return []
    if not isinstance(vms, list):
        raise ValueError("vms must be a list of {id, name, ...} mappings")
    for index, vm in enumerate(vms):
        if not isinstance(vm, dict) or "id" not in vm or "name" not in vm:
            raise ValueError(f"VM #{index} needs at least 'id' and 'name'")
        int(vm["id"])
    return [dict(vm) for vm in vms]


def validate_hosts(hosts: Any) -> list[dict]:
    """Return the host list, or raise ValueError naming what is wrong with it."""
    if isinstance(hosts, dict) and "hosts" in hosts:
        hosts = hosts["hosts"]
    if hosts is None:
        return []
    if not isinstance(hosts, list):
        raise ValueError("hosts must be a list of {id, name, ...} mappings")
    for index, host in enumerate(hosts):
        if not isinstance(host, dict) or "id" not in host or "name" not in host:
            raise ValueError(f"host #{index} needs at least 'id' and 'name'")
        int(host["id"])
    return [dict(host) for host in hosts]


# --------------------------------------------------------------------------- server


def xmlrpc_fault(code: int, message: str) -> Exception:
    import xmlrpc.client

    return xmlrpc.client.Fault(code, message)


def _require_types(method: str, *checks: tuple[Any, type]) -> None:
    """Raise the fault xmlrpc-c answers when an argument does not match the signature."""
    for position, (value, expected) in enumerate(checks, start=1):
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise xmlrpc_fault(
                XMLRPC_TYPE_ERROR,
                f"{method}: argument {position + 1} must be {expected.__name__}, "
                f"not {type(value).__name__}",
            )


def _owned_by(vm: dict, filter_flag: int) -> bool:
    """Pool filter flag as seen by oneadmin (uid 0, gid 0): -2 all, -3 mine, -4 my group,
    -1 mine or my group, >= 0 that user's."""
    uid, gid = int(vm.get("uid", 0)), int(vm.get("gid", 0))
    return {-2: True, -3: uid == 0, -4: gid == 0, -1: uid == 0 or gid == 0}.get(
        filter_flag, uid == filter_flag
    )


def _in_state(vm: dict, state: int) -> bool:
    """State filter: -2 any, -1 any but DONE, else that state."""
    vm_state = int(vm.get("state", 3))
    return state == -2 or (state == -1 and vm_state != VM_STATE_DONE) or vm_state == state


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """Threaded so a hanging answer never blocks other clients or shutdown."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2", "/")

    def do_POST(self):
        simulator: OneApiSimulator = self.server.simulator  # type: ignore[attr-defined]
        mode = simulator.mode
        if mode == "hang":
            time.sleep(min(simulator.hang_s, MAX_HANG_S))
        elif mode in ("garbage", "html", "http500"):
            self._drain_body()
            self._send_fault_mode(mode)
            return
        super().do_POST()

    def _drain_body(self) -> None:
        length = int(self.headers.get("content-length", 0) or 0)
        if length:
            self.rfile.read(length)

    def _send_fault_mode(self, mode: str) -> None:
        if mode == "http500":
            status, ctype, body = 500, "text/plain", b"Internal Server Error\n"
        elif mode == "html":
            status, ctype = 200, "text/html"
            body = (
                b"<!DOCTYPE html><html><head><title>Login</title></head><body>web UI</body></html>"
            )
        else:
            status, ctype, body = 200, "text/plain", b"this is not XML-RPC, just some bytes\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read stdout
        pass


class OneApiSimulator:
    """TEST DOUBLE of OpenNebula's XML-RPC API, served on a loopback port in a thread.

    Usable as a context manager. `calls` counts oned methods answered (not `sim.*`).
    """

    def __init__(
        self,
        hosts: list[dict] | None = None,
        *,
        user: str = "oneadmin",
        password: str = "sim-password",
        bind: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 0.0,
        mode: str = "ok",
        hang_s: float = 5.0,
        hosts_file: str | os.PathLike | None = None,
        vms: list[dict] | None = None,
        tls_context: ssl.SSLContext | None = None,
        list_order: str = "DESC",
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if list_order not in ("ASC", "DESC"):
            raise ValueError("list_order must be ASC or DESC (oned.conf's API_LIST_ORDER)")
        self.list_order = list_order
        self._hosts = validate_hosts(hosts or [])
        self._vms = validate_vms(vms)
        self._hooks: dict[str, list[tuple[Callable, bool]]] = collections.defaultdict(list)
        self._session = f"{user}:{password}"
        self._bind, self._port = bind, port
        self.delay_s, self.mode, self.hang_s = delay_s, mode, hang_s
        self._hosts_file = Path(hosts_file) if hosts_file else None
        self._tls_context = tls_context  # a server-side context: serve https instead of http
        self._hosts_file_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle

    def start(self) -> OneApiSimulator:
        """Bind, start serving in a daemon thread, and set `url`."""
        self._reload_hosts_file()
        server = _Server(
            (self._bind, self._port), requestHandler=_Handler, logRequests=False, allow_none=True
        )
        server.simulator = self  # type: ignore[attr-defined]
        self._register(server)
        if self._tls_context is not None:
            server.socket = self._tls_context.wrap_socket(server.socket, server_side=True)
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"{'https' if self._tls_context else 'http'}://{host}:{port}/RPC2"
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="one-api-sim",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (bounded: handler threads are daemons)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Process mode: serve in the calling thread until interrupted."""
        assert self._thread is not None, "call start() first"
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> OneApiSimulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- state

    def set_hosts(self, hosts: list[dict]) -> None:
        """Replace the host pool while running (e.g. "add a hypervisor")."""
        validated = validate_hosts(hosts)
        with self._lock:
            self._hosts = validated

    def set_vms(self, vms: list[dict]) -> None:
        """Replace the VM pool while running."""
        validated = validate_vms(vms)
        with self._lock:
            self._vms = validated

    def vms(self) -> list[dict]:
        with self._lock:
            return list(self._vms)

    def remove_vm(self, vm_id: int) -> None:
        """Delete a VM, as `onevm terminate` does once it reaches DONE."""
        with self._lock:
            self._vms = [vm for vm in self._vms if int(vm["id"]) != vm_id]

    def host_template(self, host_id: int) -> Template:
        """The host's TEMPLATE as (NAME, value) pairs, for assertions."""
        return host_template(self._find(self.hosts(), host_id))

    def vm_user_template(self, vm_id: int) -> Template:
        """The VM's USER_TEMPLATE as (NAME, value) pairs, for assertions."""
        return vm_user_template(self._find(self.vms(), vm_id))

    @staticmethod
    def _find(objects: list[dict], object_id: int) -> dict:
        for obj in objects:
            if int(obj["id"]) == object_id:
                return obj
        raise KeyError(object_id)

    def add_hook(self, method: str, callback: Callable[[], None], once: bool = True) -> None:
        """Run callback after `method` computed its answer, before the client receives it."""
        with self._lock:
            self._hooks[method].append((callback, once))

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode

    def hosts(self) -> list[dict]:
        self._reload_hosts_file()
        with self._lock:
            return list(self._hosts)

    def _reload_hosts_file(self) -> None:
        """Re-read the YAML hosts file when its mtime/size changed; keep the old pool on errors."""
        if self._hosts_file is None:
            return
        try:
            stat = self._hosts_file.stat()
        except OSError as error:
            print(
                f"one_api_simulator: cannot stat {self._hosts_file}: {error.strerror}",
                file=sys.stderr,
                flush=True,
            )
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._hosts_file_stamp:
            return
        try:
            import yaml

            hosts = validate_hosts(yaml.safe_load(self._hosts_file.read_text()))
        except Exception as error:  # noqa: BLE001 - a half-written file must not kill the API
            print(
                f"one_api_simulator: keeping the previous hosts, {self._hosts_file} "
                f"is invalid: {error}",
                file=sys.stderr,
                flush=True,
            )
            return
        with self._lock:
            # The file gives the pool's hosts; templates written through the API stay, as
            # they would in oned when a hypervisor is added beside them.
            written = {
                int(host["id"]): host["template_attributes"]
                for host in self._hosts
                if "template_attributes" in host
            }
            for host in hosts:
                if int(host["id"]) in written:
                    host["template_attributes"] = written[int(host["id"])]
            self._hosts = hosts
            self._hosts_file_stamp = stamp

    # -- XML-RPC methods

    def _register(self, server: _Server) -> None:
        server.register_function(
            self._counted("one.hostpool.info", self._hostpool_info), "one.hostpool.info"
        )
        server.register_function(self._counted("one.host.info", self._host_info), "one.host.info")
        for name, method in (
            ("one.host.update", self._host_update),
            ("one.vmpool.info", self._vmpool_info),
            ("one.vmpool.infoextended", self._vmpool_info_extended),
            ("one.vm.info", self._vm_info),
            ("one.vm.update", self._vm_update),
        ):
            server.register_function(self._counted(name, method), name)
        server.register_function(lambda: dict(self.calls), "sim.calls")
        server.register_function(self._reset, "sim.reset")
        server.register_function(self._set_mode_rpc, "sim.set_mode")

    def _counted(self, name: str, method: Callable) -> Callable:
        def wrapper(*params):
            with self._lock:
                self.calls[name] += 1
            if self.delay_s:
                time.sleep(min(self.delay_s, MAX_HANG_S))
            answer = method(*params)
            self._run_hooks(name)
            return answer

        return wrapper

    def _run_hooks(self, name: str) -> None:
        with self._lock:
            hooks = self._hooks.get(name, [])
            self._hooks[name] = [(callback, once) for callback, once in hooks if not once]
        for callback, _ in hooks:
            callback()

    def _authenticated(self, session: Any) -> bool:
        return isinstance(session, str) and session == self._session

    @staticmethod
    def _failure(method: str, message: str, code: int, resource_id: int = -1) -> list:
        # oned's failure envelope: [false, "[method] message", code, resource id, replication
        # index]; a single oned 6.10.5 answered -1 for the index
        return [False, f"[{method}] {message}", code, resource_id, -1]

    def _hostpool_info(self, session=None, *_ignored) -> list:
        if not self._authenticated(session):
            return self._failure(
                "one.hostpool.info",
                "User couldn't be authenticated, aborting call.",
                AUTHENTICATION,
            )
        return [True, host_pool_xml(self.hosts(), self.list_order), 0]

    def _host_info(self, session=None, host_id=None, *_ignored) -> list:
        if not self._authenticated(session):
            return self._failure(
                "one.host.info", "User couldn't be authenticated, aborting call.", AUTHENTICATION
            )
        for host in self.hosts():
            if isinstance(host_id, int) and int(host["id"]) == host_id:
                return [True, host_xml(host), 0]
        return self._failure(
            "one.host.info",
            f"Error getting host [{host_id}].",
            NO_EXISTS,
            host_id if isinstance(host_id, int) else -1,
        )

    def _host_update(
        self, session=None, host_id=None, template=None, update_type=0, *_ignored
    ) -> list:
        method = "one.host.update"
        if not self._authenticated(session):
            return self._failure(
                method, "User couldn't be authenticated, aborting call.", AUTHENTICATION
            )
        _require_types(method, (host_id, int), (template, str), (update_type, int))
        self._reload_hosts_file()
        with self._lock:
            index = self._index(self._hosts, host_id)
            if index is None:
                return self._failure(method, f"Error getting host [{host_id}].", NO_EXISTS, host_id)
            if update_type not in (0, 1):
                return self._failure(method, "Wrong update type", XML_RPC_API, -1)
            try:
                new = parse_template(template)
            except TemplateSyntaxError as error:
                return self._failure(method, f"Cannot update template. {error}", INTERNAL, -1)
            host = updated_host(self._hosts[index], new, update_type)
            self._hosts = [*self._hosts[:index], host, *self._hosts[index + 1 :]]
        return [True, host_id, 0]

    def _vm_update(self, session=None, vm_id=None, template=None, update_type=0, *_ignored) -> list:
        method = "one.vm.update"
        if not self._authenticated(session):
            return self._failure(
                method, "User couldn't be authenticated, aborting call.", AUTHENTICATION
            )
        _require_types(method, (vm_id, int), (template, str), (update_type, int))
        with self._lock:
            index = self._index(self._vms, vm_id)
            if index is None:
                return self._failure(
                    method, f"Error getting virtual machine [{vm_id}].", NO_EXISTS, vm_id
                )
            if update_type not in (0, 1):
                return self._failure(method, "Wrong update type", XML_RPC_API, -1)
            try:
                new = parse_template(template)
            except TemplateSyntaxError as error:  # the VM parses before it locks: ACTION, no prefix
                return self._failure(method, str(error), ACTION, -1)
            vm = dict(self._vms[index])
            vm["user_template_attributes"] = (
                new if update_type == 0 else merge_template(vm_user_template(vm), new)
            )
            self._vms = [*self._vms[:index], vm, *self._vms[index + 1 :]]
        return [True, vm_id, 0]

    def _vm_info(self, session=None, vm_id=None, *_ignored) -> list:
        if not self._authenticated(session):
            return self._failure(
                "one.vm.info", "User couldn't be authenticated, aborting call.", AUTHENTICATION
            )
        _require_types("one.vm.info", (vm_id, int))
        for vm in self.vms():
            if int(vm["id"]) == vm_id:
                return [True, vm_xml(vm), 0]
        return self._failure(
            "one.vm.info", f"Error getting virtual machine [{vm_id}].", NO_EXISTS, vm_id
        )

    def _vmpool_info(self, session=None, *args) -> list:
        return self._vm_pool("one.vmpool.info", session, args, vm_short_xml)

    def _vmpool_info_extended(self, session=None, *args) -> list:
        return self._vm_pool("one.vmpool.infoextended", session, args, vm_xml)

    def _vm_pool(
        self, method: str, session: Any, args: tuple, render: Callable[[dict], str]
    ) -> list:
        """VM_POOL filtered as oned filters it: owner flag, ID range or page, state."""
        if not self._authenticated(session):
            return self._failure(
                method, "User couldn't be authenticated, aborting call.", AUTHENTICATION
            )
        if len(args) < 4:  # oned's signature is A:siiiis, the query string optional
            raise xmlrpc_fault(
                XMLRPC_TYPE_ERROR, f"{method}: expected 4 or 5 arguments after the session"
            )
        filter_flag, start, end, state = args[:4]
        _require_types(method, (filter_flag, int), (start, int), (end, int), (state, int))
        if state < -2 or state > VM_STATE_MAX:
            return self._failure(method, f"Incorrect state filter {state}", XML_RPC_API, -1)
        if filter_flag < -4:
            return self._failure(method, "Incorrect filter_flag", XML_RPC_API, -1)
        vms = sorted(self.vms(), key=lambda vm: int(vm["id"]), reverse=self.list_order == "DESC")
        vms = [vm for vm in vms if _owned_by(vm, filter_flag) and _in_state(vm, state)]
        if end < -1:  # pagination: start is an offset, -end the page size
            vms = vms[max(start, 0) : max(start, 0) - end]
        else:
            vms = [
                vm
                for vm in vms
                if (start < 0 or int(vm["id"]) >= start) and (end < 0 or int(vm["id"]) <= end)
            ]
        return [True, "<VM_POOL>" + "".join(render(vm) for vm in vms) + "</VM_POOL>", 0]

    @staticmethod
    def _index(objects: list[dict], object_id: Any) -> int | None:
        for index, obj in enumerate(objects):
            if int(obj["id"]) == object_id:
                return index
        return None

    def _reset(self) -> bool:
        with self._lock:
            self.calls.clear()
        return True

    def _set_mode_rpc(self, mode: str) -> bool:
        self.set_mode(mode)
        return True


# --------------------------------------------------------------------------- process mode


def _read_password(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip()


def _read_vms(path: str | None) -> list[dict]:
    if path is None:
        return []
    import yaml

    with open(path, encoding="utf-8") as handle:
        vms = yaml.safe_load(handle)
    return validate_vms(vms["vms"] if isinstance(vms, dict) and "vms" in vms else vms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="TEST DOUBLE: OpenNebula XML-RPC API simulator (hosts, VMs, template updates)"
    )
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=26330)
    parser.add_argument("--hosts", required=True, help="YAML list of hosts, re-read on change")
    parser.add_argument("--user", default="oneadmin")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--vms", help="YAML list of VMs, read once at start")
    args = parser.parse_args(argv)

    simulator = OneApiSimulator(
        user=args.user,
        password=_read_password(args.password_file),
        bind=args.bind,
        port=args.port,
        delay_s=args.delay,
        mode=args.mode,
        hosts_file=args.hosts,
        vms=_read_vms(args.vms),
    )
    # SIGTERM (kill PID) ends the process cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    simulator.start()
    print(f"listening on {simulator.url}", flush=True)
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
