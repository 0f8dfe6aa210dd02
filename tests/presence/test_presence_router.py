"""The router backend against a real local HTTP server that plays a router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from presence_fake_router import PASSWORD, USERNAME, FakeRouter, cookie_router_config

from homesec.broker import free_port
from homesec_presence.backends.base import BackendError
from homesec_presence.backends.router import RouterBackend, fill
from homesec_presence.devices import Device, Watchlist
from homesec_presence.settings import RouterSettings

ALICE = {"mac": "AA-BB-CC-DD-EE-01", "hostname": "alices-phone"}
BOB = {"mac": "aa:bb:cc:dd:ee:02", "hostname": "Bobs-Pixel.lan"}
WATCH = Watchlist({"alice": ["aa:bb:cc:dd:ee:01"], "bob": ["bobs-pixel"], "carol": ["carol-ipad"]})


@pytest.fixture
def router() -> Iterator[FakeRouter]:
    server = FakeRouter().start()
    yield server
    server.stop()


def test_cookie_login_devices_and_matching(router: FakeRouter) -> None:
    router.state.set_devices([ALICE, BOB])
    backend = RouterBackend(RouterSettings(**cookie_router_config(router.url)))
    assert backend.devices() == [
        Device(mac="AA-BB-CC-DD-EE-01", name="alices-phone"),
        Device(mac="aa:bb:cc:dd:ee:02", name="Bobs-Pixel.lan"),
    ]
    assert backend.observe(WATCH) == {"alice": True, "bob": True, "carol": False}
    backend.observe(WATCH)
    assert router.state.logins == 1  # the cookie session is reused


def test_expired_session_logs_in_again_once(router: FakeRouter) -> None:
    router.state.set_devices([ALICE])
    backend = RouterBackend(RouterSettings(**cookie_router_config(router.url)))
    assert backend.observe(WATCH)["alice"] is True
    router.state.expire()
    assert backend.observe(WATCH)["alice"] is True
    assert router.state.logins == 2


def test_wrong_password_is_a_clear_error_without_the_secret(router: FakeRouter) -> None:
    cfg = cookie_router_config(router.url, password="wrong-secret")
    backend = RouterBackend(RouterSettings(**cfg))
    with pytest.raises(BackendError, match="login failed: HTTP 401") as err:
        backend.devices()
    assert "wrong-secret" not in str(err.value)


def test_server_errors_timeouts_and_refusals(router: FakeRouter) -> None:
    backend = RouterBackend(RouterSettings(**cookie_router_config(router.url)))
    router.state.fail_status = 500
    with pytest.raises(BackendError, match="HTTP 500"):
        backend.devices()
    router.state.fail_status = None
    router.state.set_devices([ALICE])
    assert backend.observe(WATCH)["alice"] is True  # recovers by itself

    down = RouterBackend(RouterSettings(**cookie_router_config(f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(BackendError, match="login request failed: ConnectError"):
        down.devices()


def test_empty_device_list_is_not_an_error_but_a_missing_path_is(router: FakeRouter) -> None:
    backend = RouterBackend(RouterSettings(**cookie_router_config(router.url)))
    assert backend.observe(WATCH) == {"alice": False, "bob": False, "carol": False}
    wrong = RouterBackend(
        RouterSettings(**cookie_router_config(router.url, devices_path="result.hosts[*]"))
    )
    with pytest.raises(BackendError, match="no devices at 'result.hosts"):
        wrong.devices()


def test_token_session_in_a_header(router: FakeRouter) -> None:
    router.state.set_devices([BOB])
    cfg = RouterSettings(
        base_url=router.url,
        login_url="/api/token",
        login_body={"auth": {"user": "${username}", "pass": "${password}"}},
        username=USERNAME,
        password=PASSWORD,
        session="token",
        token_path="result.token",
        devices_url="/api/clients",
        devices_path="clients",
        mac_field="mac",
        name_field="hostname",
    )
    backend = RouterBackend(cfg)
    assert backend.observe(WATCH) == {"alice": False, "bob": True, "carol": False}
    router.state.expire()
    assert backend.observe(WATCH)["bob"] is True
    assert router.state.logins == 2


def test_jsonrpc_router_worked_example(router: FakeRouter) -> None:
    """The README's worked example (an OpenWrt-style ubus JSON-RPC API), verbatim."""
    router.state.set_devices([ALICE])
    cfg = RouterSettings(
        base_url=router.url,
        login_url="/ubus",
        login_body={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "call",
            "params": [
                "00000000000000000000000000000000",
                "session",
                "login",
                {"username": "${username}", "password": "${password}"},
            ],
        },
        username=USERNAME,
        password=PASSWORD,
        session="token",
        token_path="result[1].ubus_rpc_session",
        token_header="",
        devices_url="/ubus",
        devices_method="POST",
        devices_body={
            "jsonrpc": "2.0",
            "id": 2,
            "method": "call",
            "params": ["${token}", "hostapd.wlan0", "get_clients", {}],
        },
        devices_path="result[1].clients.*",
        mac_field="@key",
        name_field="hostname",
        expired_path="error.code",
        expired_value="-32002",
    )
    backend = RouterBackend(cfg)
    assert backend.observe(WATCH)["alice"] is True
    router.state.expire()  # the router answers 200 with error -32002
    assert backend.observe(WATCH)["alice"] is True
    assert router.state.logins == 2
    router.state.set_devices([])
    assert backend.observe(WATCH)["alice"] is False


def test_password_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "router_password"
    secret.write_text(PASSWORD + "\n")
    cfg = RouterSettings(password_file=secret)
    assert cfg.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(cfg)


def test_fill_substitutes_only_inside_strings() -> None:
    template = {"u": "${username}", "list": ["${password}", 3, None], "${username}": "k"}
    assert fill(template, {"username": "a", "password": 'x"y'}) == {
        "u": "a",
        "list": ['x"y', 3, None],
        "${username}": "k",
    }
