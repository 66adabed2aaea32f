"""The record of what the deploy brought to a host (tasks/install_record/record.py): its
file read strictly (any other shape refused, naming what is wrong), the format of the
versions before read and upgraded, intents recorded before a change and confirmed
after, what a deploy adds (never forgetting earlier entries) and what remove.py takes out."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.install_record.record import (
    RECORD_FILE,
    DaemonJsonEntry,
    EngineEntry,
    FileEntry,
    InstallRecord,
    InstallRecordError,
    PreviousFile,
    parse_install_record,
    sha256_of,
)

OURS = {"iptables": False, "ip6tables": False, "ip-forward": False, "bridge": "none"}
DIGEST_A, DIGEST_B = sha256_of(b"a"), sha256_of(b"b")

records = st.builds(
    lambda **fields: InstallRecord(**fields),  # noqa: PLW0108 - no field inferred
    engine=st.none()
    | st.builds(
        lambda **fields: EngineEntry(**fields),  # noqa: PLW0108 - no field inferred
        package_manager=st.sampled_from(["apt", "dnf"]),
        done=st.booleans(),
        packages=st.lists(
            st.sampled_from(["docker.io", "docker-ce", "docker-ce-cli", "containerd.io"]),
            unique=True,
        ).map(tuple),
    ),
    daemon_json=st.none()
    | st.builds(
        lambda **fields: DaemonJsonEntry(**fields),  # noqa: PLW0108 - no field inferred
        settings=st.just(dict(OURS)),
        done=st.booleans(),
        previous=st.dictionaries(st.sampled_from(list(OURS)), st.booleans() | st.text(max_size=4)),
        previous_file=st.none()
        | st.binary(max_size=20).map(PreviousFile.of)
        | st.just(PreviousFile.of(None)),
        written_sha256=st.none() | st.just(DIGEST_A),
    ),
    repository_files=st.lists(
        st.sampled_from(["/etc/yum.repos.d/docker-ce.repo", "/etc/apt/keyrings/docker.asc"]),
        unique=True,
    ).map(tuple),
    images=st.lists(
        st.sampled_from(["hubblo/scaphandre:1.0.2", "hubblo/scaphandre:1.0.3"]), unique=True
    ).map(tuple),
    files=st.dictionaries(
        st.sampled_from(["/etc/prometheus/scaphandre_rules.yml", "/etc/one/x.conf"]),
        st.builds(
            lambda **fields: FileEntry(**fields),  # noqa: PLW0108 - no field inferred
            sha256=st.none() | st.just(DIGEST_A),
            writing=st.none() | st.just(DIGEST_B),
        ),
    ),
)


@settings(deadline=None)
@given(records)
def test_the_file_gives_back_the_record_it_was_written_from(record):
    assert parse_install_record(record.to_json().encode()) == record


def test_no_file_is_an_empty_record_and_an_empty_record_says_nothing_was_installed():
    assert parse_install_record(None) == InstallRecord() == parse_install_record(b"  \n")
    assert InstallRecord().empty and not InstallRecord().installed_engine
    assert json.loads(InstallRecord().to_json()) == {"format": 2}


# --------------------------------------------------------------------------- refused, field by field

MALFORMED = {
    "packages-a-string": (
        {"format": 2, "engine": {"package_manager": "apt", "packages": "docker.io"}},
        'engine.packages: input should be a valid array (found str "docker.io")',
    ),
    "packages-a-number": (
        {"format": 2, "engine": {"package_manager": "apt", "packages": 3}},
        "engine.packages: input should be a valid array (found int 3)",
    ),
    "a-package-not-a-string": (
        {"format": 2, "engine": {"package_manager": "apt", "packages": ["docker.io", 7]}},
        "engine.packages.1: input should be a valid string (found int 7)",
    ),
    "images-a-string": (
        {"format": 2, "images": "hubblo/scaphandre:1.0.2"},
        "images: input should be a valid array",
    ),
    "unknown-format": (
        {"format": 3},
        "format 3 is not one this deploy reads (1 or 2): was it written by a newer version?",
    ),
    "no-format": ({"engine": None}, "format null is not one this deploy reads"),
    "format-a-string": ({"format": "2"}, 'format "2" is not one this deploy reads'),
    "an-unknown-key": ({"format": 2, "engines": []}, "engines: extra inputs are not permitted"),
    "a-file-digest-that-is-not-one": (
        {"format": 2, "files": {"/etc/x": {"sha256": "abc"}}},
        "files./etc/x.sha256: string should match pattern",
    ),
    "a-relative-file-path": (
        {"format": 2, "files": {"x.yml": {}}},
        "files.x.yml.[key]: string should match pattern",
    ),
    "done-a-number": (
        {"format": 2, "engine": {"package_manager": "apt", "packages": [], "done": 1}},
        "engine.done: input should be a valid boolean (found int 1)",
    ),
    "previous-bytes-not-base64": (
        {
            "format": 2,
            "daemon_json": {
                "settings": {},
                "previous_file": {"present": True, "base64": "not base64!"},
            },
        },
        "daemon_json.previous_file.base64: value error, not base64",
    ),
    "format-1-packages-a-string": (
        {"format": 1, "engine": {"package_manager": "apt", "packages": "docker.io"}},
        "engine.packages: input should be a valid array",
    ),
    "not-an-object": (["images"], "it holds a JSON list, not an object"),
}


@pytest.mark.parametrize("data, says", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_record_of_the_wrong_shape_is_refused_naming_the_file_the_field_and_the_way_out(
    data, says
):
    with pytest.raises(InstallRecordError) as refused:
        parse_install_record(json.dumps(data).encode())
    message = str(refused.value)
    assert message.startswith(
        f"{RECORD_FILE} (the deploy's record of what it installed here) cannot be read ("
    )
    assert says in message, message
    assert message.endswith(
        "restore it, or delete it to have the deploy treat everything it finds on this host "
        "as the operator's"
    )


@pytest.mark.parametrize(
    "content, says",
    [(b"{not json", "Expecting property name"), (b"\xff\xfe{}", "it is not UTF-8 text")],
    ids=["not-json", "not-utf8"],
)
def test_a_file_that_is_not_json_text_is_refused(content, says):
    with pytest.raises(InstallRecordError, match=says):
        parse_install_record(content)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Near-records: the right keys holding any JSON value, so the property reaches every field.
fields = {
    "engine": st.fixed_dictionaries(
        {},
        optional={
            "package_manager": json_values | st.sampled_from(["apt", "dnf"]),
            "packages": json_values,
            "done": json_values,
        },
    )
    | json_values,
    "daemon_json": st.fixed_dictionaries(
        {"settings": json_values},
        optional={
            "previous": json_values,
            "previous_file": json_values,
            "written_sha256": json_values,
            "done": json_values,
        },
    ),
    "repository_files": json_values,
    "images": json_values,
    "files": st.dictionaries(
        st.text(max_size=6).map(lambda path: "/" + path), json_values, max_size=2
    )
    | json_values,
}
near_records = (
    st.fixed_dictionaries({"format": st.sampled_from([1, 2]) | json_values}, optional=fields)
    | json_values
)


@settings(max_examples=400, deadline=None)  # a shared machine: time is not what this checks
@given(near_records)
def test_any_json_is_a_valid_record_or_the_record_error_and_never_a_string_where_a_list_is_expected(
    data,
):
    try:
        record = parse_install_record(json.dumps(data).encode())
    except InstallRecordError as error:
        assert str(error).startswith(f"{RECORD_FILE} (the deploy's record")
        return
    assert isinstance(record, InstallRecord)
    for listed in (record.engine_packages, record.repository_files, record.images):
        assert isinstance(listed, tuple) and all(isinstance(item, str) and item for item in listed)
    assert all(isinstance(path, str) and path.startswith("/") for path in record.files)
    assert parse_install_record(record.to_json().encode()) == record


# --------------------------------------------------------------------------- the versions before


def test_a_record_written_by_the_versions_before_is_read_and_upgraded():
    earlier = {
        "format": 1,
        "engine": {"package_manager": "apt", "packages": ["docker.io"]},
        "daemon_json": {"settings": OURS, "previous": {"iptables": True}},
        "images": ["hubblo/scaphandre:1.0.2"],
    }
    record = parse_install_record(json.dumps(earlier).encode())
    assert (
        record.installed_engine
        and record.engine_packages == ("docker.io",)
        and record.engine_confirmed
    )
    assert record.daemon_json.previous == {"iptables": True}
    assert record.daemon_json.previous_file is None, "its earlier bytes were never recorded"
    assert json.loads(record.to_json())["format"] == 2


# --------------------------------------------------------------------------- intents and confirmations


def test_daemon_json_as_it_was_is_recorded_once_and_a_later_run_never_replaces_it():
    operators = b'{ "iptables": true }'
    first = InstallRecord().intending_daemon_json(OURS, {"iptables": True}, operators, b"ours")
    assert first.daemon_json.previous_file.content == operators and not first.daemon_json.done
    # A run cut after it wrote the file: the next one sees the deploy's own values there.
    again = first.intending_daemon_json(OURS, dict(OURS), b"ours", b"ours")
    assert again.daemon_json.previous == {"iptables": True}
    assert again.daemon_json.previous_file.content == operators
    assert again.with_engine_confirmed().daemon_json.done


def test_no_daemon_json_before_is_recorded_as_such():
    entry = InstallRecord().intending_daemon_json(OURS, None, None, b"x").daemon_json
    assert entry.previous_file == PreviousFile(present=False) and entry.previous == {}
    assert json.loads(InstallRecord(daemon_json=entry).to_json())["daemon_json"][
        "previous_file"
    ] == {"present": False}


def test_the_engine_is_the_deploys_from_its_intent_on_and_keeps_every_package_recorded():
    intended = InstallRecord().intending_engine("dnf", ["docker-ce", "containerd.io"])
    assert intended.installed_engine and not intended.engine_confirmed
    again = intended.intending_engine(
        "dnf", ["docker-ce"]
    )  # containerd.io got installed before the cut
    assert again.engine_packages == ("docker-ce", "containerd.io")
    assert again.with_engine_confirmed().engine_confirmed


def test_a_file_is_the_deploys_from_its_intent_and_both_digests_count_until_confirmed():
    intended = InstallRecord(
        files={"/etc/p/rules.yml": FileEntry(sha256=DIGEST_A)}
    ).intending_files({"/etc/p/rules.yml": DIGEST_B, "/etc/p/targets.yml": DIGEST_A})
    rules, targets = intended.files["/etc/p/rules.yml"], intended.files["/etc/p/targets.yml"]
    assert rules.holds(DIGEST_A) and rules.holds(DIGEST_B), (
        "cut before or after the write: the deploy's either way"
    )
    assert targets == FileEntry(writing=DIGEST_A)
    confirmed = intended.with_files_confirmed(["/etc/p/rules.yml"])
    assert confirmed.files["/etc/p/rules.yml"] == FileEntry(sha256=DIGEST_B)
    assert confirmed.files["/etc/p/targets.yml"] == FileEntry(writing=DIGEST_A), (
        "only what this run wrote"
    )
    assert intended.intending_files({"/etc/p/rules.yml": DIGEST_B}) == intended


def test_a_rerun_never_forgets_what_an_earlier_run_recorded():
    first = (
        InstallRecord().intending_engine("apt", ["docker.io"]).with_image("hubblo/scaphandre:1.0.2")
    )
    again = first.intending_engine("apt", []).with_image("hubblo/scaphandre:1.0.3")
    assert again.engine_packages == ("docker.io",) and again.installed_engine
    assert again.images == ("hubblo/scaphandre:1.0.2", "hubblo/scaphandre:1.0.3")


def test_removal_takes_out_the_engine_with_its_files_and_settings_and_only_what_it_removed():
    record = (
        InstallRecord()
        .intending_engine("dnf", ["docker-ce"])
        .with_repository_files(["/etc/yum.repos.d/d.repo"])
        .intending_daemon_json(OURS, None, None, b"x")
        .with_image("a:1")
        .with_image("b:2")
        .adopting_files({"/etc/p/t.yml": DIGEST_A})
    )
    assert record.without_engine() == InstallRecord(
        images=("a:1", "b:2"), files={"/etc/p/t.yml": FileEntry(sha256=DIGEST_A)}
    )
    assert (
        record.without_engine().without_images(["a:1", "b:2"]).without_files(["/etc/p/t.yml"]).empty
    )
    assert record.without_images(["a:1"]).images == ("b:2",)


def test_previous_bytes_travel_as_base64():
    entry = PreviousFile.of(b"\x00\xff{}")
    assert (
        entry.base64 == base64.b64encode(b"\x00\xff{}").decode() and entry.content == b"\x00\xff{}"
    )


# --------------------------------------------------------------------------- remove.py on a record it cannot read


@pytest.mark.parametrize(
    "groups",
    [("hypervisors",), ("prometheus",), ("hypervisors", "prometheus")],
    ids=["hypervisor", "prometheus-server", "both"],
)
def test_remove_py_removes_nothing_on_a_host_whose_record_is_of_the_wrong_shape(groups):
    from tests.unit.pyinfra_harness import all_commands, planned_script, record_facts

    bad = record_facts({"format": 2, "engine": {"package_manager": "apt", "packages": "docker.io"}})
    commands = all_commands(
        planned_script(
            "remove.py",
            {**bad, "DockerEngineInstalled": True},
            groups=groups,
            data={"remove_docker_engine": True},
        )
    )
    assert len(commands) == 1 and commands[0].startswith("call log_failure"), commands
    assert (
        RECORD_FILE in commands[0]
        and "cannot be read (engine.packages: input should be a valid array" in commands[0]
    )
