"""Endpoint, credentials and timeout lookup, following OpenNebula's own (Ruby client) order."""

import pytest

from tasks.opennebula import client
from tasks.opennebula.client import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_XMLRPC_URL,
    OneAuthError,
    OneEndpoint,
    resolve_endpoint,
)
from tasks.opennebula.pool import OpenNebulaError

SECRET = "Zx9-very-secret-pw"


@pytest.fixture
def places(tmp_path):
    """A fake home, a fake /var/lib/one and a spare directory; none holds credentials yet."""
    home = tmp_path / "home"
    system = tmp_path / "var-lib-one" / ".one" / "one_auth"
    spare = tmp_path / "spare"
    for directory in (home, system.parent, spare):
        directory.mkdir(parents=True)
    return {"home": home, "system": system, "spare": spare}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def resolve(places, environ=None, **kwargs):
    return resolve_endpoint(
        environ=environ or {},
        home=str(places["home"]),
        system_auth_file=str(places["system"]),
        **kwargs,
    )


def test_home_one_auth_is_used_with_defaults(places):
    write(places["home"] / ".one" / "one_auth", f"oneadmin:{SECRET}\n")
    endpoint = resolve(places)
    assert endpoint.url == DEFAULT_XMLRPC_URL == "http://localhost:2633/RPC2"
    assert endpoint.session == f"oneadmin:{SECRET}"
    assert endpoint.user == "oneadmin"
    assert endpoint.timeout == DEFAULT_TIMEOUT_S
    assert endpoint.auth_source.startswith("~/.one/one_auth (")


def test_one_auth_env_beats_home_and_system(places):
    write(places["home"] / ".one" / "one_auth", "home:pw\n")
    write(places["system"], "system:pw\n")
    env_file = write(places["spare"] / "auth", "envuser:pw\n")
    endpoint = resolve(places, {"ONE_AUTH": str(env_file)})
    assert endpoint.user == "envuser"
    assert endpoint.auth_source == f"$ONE_AUTH ({env_file})"


def test_home_beats_system(places):
    write(places["home"] / ".one" / "one_auth", "home:pw\n")
    write(places["system"], "system:pw\n")
    assert resolve(places).user == "home"


def test_system_file_is_the_last_resort(places):
    write(places["system"], "oneadmin:pw\n")
    endpoint = resolve(places)
    assert endpoint.user == "oneadmin"
    assert endpoint.auth_source == str(places["system"])


def test_system_file_default_is_opennebulas():
    assert client.SYSTEM_ONE_AUTH_FILE == "/var/lib/one/.one/one_auth"


def test_home_comes_from_environ_when_not_given(places):
    write(places["home"] / ".one" / "one_auth", "fromenvhome:pw\n")
    endpoint = resolve_endpoint(
        environ={"HOME": str(places["home"])}, system_auth_file=str(places["system"])
    )
    assert endpoint.user == "fromenvhome"


def test_missing_one_auth_file_named_by_env_is_an_error_not_a_fallthrough(places):
    write(places["home"] / ".one" / "one_auth", "home:pw\n")
    missing = places["spare"] / "nope"
    with pytest.raises(OneAuthError) as caught:
        resolve(places, {"ONE_AUTH": str(missing)})
    assert "$ONE_AUTH" in str(caught.value) and str(missing) in str(caught.value)


def test_empty_one_auth_env_counts_as_unset(places):
    write(places["home"] / ".one" / "one_auth", "home:pw\n")
    assert resolve(places, {"ONE_AUTH": ""}).user == "home"


def test_no_credentials_anywhere_lists_where_it_looked(places):
    with pytest.raises(OneAuthError) as caught:
        resolve(places)
    message = str(caught.value)
    assert str(places["home"] / ".one" / "one_auth") in message
    assert str(places["system"]) in message
    assert "ONE_AUTH" in message and "one_auth_file" in message


def test_explicit_auth_file_beats_env(places):
    env_file = write(places["spare"] / "env", "envuser:pw\n")
    explicit = write(places["spare"] / "explicit", "explicit:pw\n")
    endpoint = resolve(places, {"ONE_AUTH": str(env_file)}, one_auth_file=str(explicit))
    assert endpoint.user == "explicit"
    assert endpoint.auth_source == f"one_auth_file ({explicit})"


def test_explicit_auth_file_missing_is_an_error(places):
    with pytest.raises(OneAuthError, match="one_auth_file"):
        resolve(places, one_auth_file=str(places["spare"] / "missing"))


@pytest.mark.parametrize(
    "content",
    [
        "",
        "\n",
        "oneadmin\n",
        "oneadmin:\n",
        ":password\n",
        "  \nuser:pw\n",
    ],
)
def test_malformed_files_are_rejected_without_echoing_content(places, content):
    path = write(places["home"] / ".one" / "one_auth", content)
    with pytest.raises(OneAuthError) as caught:
        resolve(places)
    message = str(caught.value)
    assert str(path) in message and "user:password" in message
    assert "password\n" not in message


def test_malformed_file_with_secret_never_shows_it(places):
    write(places["home"] / ".one" / "one_auth", f"{SECRET}\n")  # no colon
    with pytest.raises(OneAuthError) as caught:
        resolve(places)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_first_line_is_used_and_whitespace_stripped(places):
    write(places["home"] / ".one" / "one_auth", f"  oneadmin:{SECRET}  \r\nsecond:line\n")
    assert resolve(places).session == f"oneadmin:{SECRET}"


def test_password_may_contain_colons(places):
    write(places["home"] / ".one" / "one_auth", "oneadmin:a:b:c\n")
    endpoint = resolve(places)
    assert endpoint.user == "oneadmin" and endpoint.session == "oneadmin:a:b:c"


def test_unreadable_file_named_by_env_is_an_auth_error(places, monkeypatch):
    path = write(places["spare"] / "auth", f"oneadmin:{SECRET}\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Root can read a mode-000 file, so simulate the permission failure at open().
    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(OneAuthError) as caught:
        resolve(places, {"ONE_AUTH": str(path)})
    message = str(caught.value)
    assert "cannot read" in message and "Permission denied" in message and str(path) in message
    assert SECRET not in message


def test_directory_instead_of_file_is_not_taken(places):
    (places["spare"] / "dir").mkdir()
    with pytest.raises(OneAuthError, match="not a file"):
        resolve(places, {"ONE_AUTH": str(places["spare"] / "dir")})


def test_binary_file_is_rejected(places):
    (places["home"] / ".one").mkdir()
    (places["home"] / ".one" / "one_auth").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(OneAuthError, match="not text"):
        resolve(places)


def test_one_xmlrpc_env_is_honoured(places):
    write(places["system"], "oneadmin:pw\n")
    endpoint = resolve(places, {"ONE_XMLRPC": "http://192.0.2.1:2633/RPC2"})
    assert endpoint.url == "http://192.0.2.1:2633/RPC2"


def test_explicit_one_xmlrpc_beats_env(places):
    write(places["system"], "oneadmin:pw\n")
    endpoint = resolve(
        places,
        {"ONE_XMLRPC": "http://192.0.2.1:2633/RPC2"},
        one_xmlrpc="https://one.example.org/RPC2",
    )
    assert endpoint.url == "https://one.example.org/RPC2"


@pytest.mark.parametrize("bad", ["localhost:2633", "ftp://x/RPC2", "http://"])
def test_invalid_url_is_a_clear_error(places, bad):
    write(places["system"], "oneadmin:pw\n")
    with pytest.raises(OpenNebulaError, match="not an http"):
        resolve(places, {"ONE_XMLRPC": bad})


def test_timeout_from_env(places):
    write(places["system"], "oneadmin:pw\n")
    assert resolve(places, {"ONE_XMLRPC_TIMEOUT": "5"}).timeout == 5.0
    assert resolve(places, {"ONE_XMLRPC_TIMEOUT": "2.5"}).timeout == 2.5


def test_explicit_timeout_beats_env(places):
    write(places["system"], "oneadmin:pw\n")
    assert resolve(places, {"ONE_XMLRPC_TIMEOUT": "5"}, timeout=12).timeout == 12.0
    assert resolve(places, {"ONE_XMLRPC_TIMEOUT": "5"}, timeout="7").timeout == 7.0


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "nan", "inf"])
def test_invalid_timeout_env_is_a_clear_error(places, bad):
    write(places["system"], "oneadmin:pw\n")
    with pytest.raises(OpenNebulaError) as caught:
        resolve(places, {"ONE_XMLRPC_TIMEOUT": bad})
    assert "$ONE_XMLRPC_TIMEOUT" in str(caught.value) and "positive number" in str(caught.value)


def test_invalid_explicit_timeout_is_a_clear_error(places):
    write(places["system"], "oneadmin:pw\n")
    with pytest.raises(OpenNebulaError, match="one_xmlrpc_timeout"):
        resolve(places, timeout="soon")


def test_endpoint_repr_and_str_never_show_the_password(places):
    write(places["home"] / ".one" / "one_auth", f"oneadmin:{SECRET}\n")
    endpoint = resolve(places)
    for text in (repr(endpoint), str(endpoint), f"{endpoint}", f"{endpoint!r}", repr([endpoint])):
        assert SECRET not in text
        assert "session" not in text


def test_endpoint_built_directly_hides_session_too():
    endpoint = OneEndpoint(
        url="http://h:2633/RPC2", session=f"u:{SECRET}", timeout=3, auth_source="test"
    )
    assert SECRET not in repr(endpoint) and endpoint.user == "u"


# --------------------------------------------------------------------------- endpoint URLs, BOM, CA file


@pytest.mark.parametrize(
    "bad",
    ["http://[::1/RPC2", "http://[::1]:99999/RPC2", "http://h:port/RPC2", "http://h:2633/RP C2"],
)
def test_a_malformed_url_is_the_one_line_endpoint_error(places, bad):
    write(places["system"], "oneadmin:pw\n")
    with pytest.raises(OpenNebulaError) as caught:
        resolve(places, one_xmlrpc=bad)
    message = str(caught.value)
    assert (
        message.startswith("one_xmlrpc is ")
        and "not an http(s) URL" in message
        and "\n" not in message
    )
    assert "Invalid IPv6 URL" not in message


def test_a_malformed_url_with_credentials_does_not_show_them(places):
    write(places["system"], "oneadmin:pw\n")
    with pytest.raises(OpenNebulaError) as caught:
        resolve(places, {"ONE_XMLRPC": f"http://proxy:{SECRET}@[::1/RPC2"})
    assert SECRET not in str(caught.value) and "$ONE_XMLRPC is 'http://***@[::1/RPC2'" in str(
        caught.value
    )


def test_ipv6_endpoints_are_accepted(places):
    write(places["system"], "oneadmin:pw\n")
    assert resolve(places, one_xmlrpc="http://[::1]:2633/RPC2").url == "http://[::1]:2633/RPC2"


def test_a_file_with_a_utf8_byte_order_mark_works(places):
    (places["home"] / ".one").mkdir()
    (places["home"] / ".one" / "one_auth").write_bytes(
        b"\xef\xbb\xbfoneadmin:" + SECRET.encode() + b"\r\n"
    )
    endpoint = resolve(places)
    assert endpoint.user == "oneadmin" and endpoint.session == f"oneadmin:{SECRET}"


def test_a_ca_file_that_is_not_there_names_the_setting(places):
    write(places["system"], "oneadmin:pw\n")
    with pytest.raises(
        OpenNebulaError, match=r"one_xmlrpc_ca_file .*/nope\.pem does not exist or is not a file"
    ):
        resolve(places, ca_file=str(places["spare"] / "nope.pem"))
    ca = write(places["spare"] / "ca.pem", "-----BEGIN CERTIFICATE-----\n")
    assert resolve(places, ca_file=str(ca)).ca_file == str(ca)


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://u:p@h:1/RPC2", "http://***@h:1/RPC2"),
        ("https://user:pa/ss@word@h/RPC2", "https://***@h/RPC2"),
        ("http://h:2633/RPC2", "http://h:2633/RPC2"),
        ("not a url @ all", "not a url @ all"),
    ],
)
def test_redact_url_hides_the_whole_user_part(url, shown):
    assert client.redact_url(url) == shown


def test_an_endpoint_with_credentials_in_its_url_never_shows_them():
    endpoint = OneEndpoint(
        url=f"http://proxyuser:{SECRET}@proxy/RPC2",
        session="u:other-secret",
        timeout=3,
        auth_source="test",
    )
    for text in (repr(endpoint), str(endpoint), endpoint.display_url):
        assert SECRET not in text and "proxyuser" not in text and "other-secret" not in text
    assert endpoint.display_url == "http://***@proxy/RPC2"
