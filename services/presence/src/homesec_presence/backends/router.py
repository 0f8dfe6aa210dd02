"""Generic router web-API backend, configured declaratively (no code per router).

1. login request (optional) with ``${username}``/``${password}`` filled in from settings;
2. session kept by cookie (httpx's cookie jar) or by a token read from the login response at a
   JSON path and sent in a header (and available as ``${token}`` in the devices body);
3. devices request; devices found at a JSON path, MAC and host name read from each;
4. a 401/403, a redirect, or an ``expired_path`` match means the session expired: log in again
   once and retry; failing again is a :class:`BackendError`.
"""

from __future__ import annotations

import logging
from string import Template
from typing import Any

import httpx

from homesec_presence.backends.base import BackendError, DeviceBackend
from homesec_presence.devices import Device
from homesec_presence.jsonpath import find, first
from homesec_presence.settings import RouterSettings

log = logging.getLogger("homesec_presence.router")


def fill(template: Any, values: dict[str, str]) -> Any:
    """Replace ``${name}`` in every string of a JSON-like structure (keys stay as they are).

    Substitution happens after parsing, so a password with quotes or braces stays intact."""
    if isinstance(template, str):
        return Template(template).safe_substitute(values)
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


class RouterBackend(DeviceBackend):
    name = "router"

    def __init__(self, cfg: RouterSettings, transport: httpx.BaseTransport | None = None) -> None:
        self.cfg = cfg
        self._client = httpx.Client(
            base_url=cfg.base_url,
            headers=cfg.headers,
            timeout=cfg.timeout_seconds,
            verify=cfg.verify_tls,
            follow_redirects=False,
            transport=transport,
        )
        self._token: str | None = None
        self._logged_in = False
        self.logins = 0

    def close(self) -> None:
        self._client.close()

    # ---- session ---------------------------------------------------------------------------

    def _login(self) -> None:
        cfg = self.cfg
        assert cfg.login_url is not None
        self._client.cookies.clear()
        self._token = None
        self._logged_in = False
        body = fill(
            cfg.login_body,
            {"username": cfg.username, "password": cfg.password.get_secret_value()},
        )
        kwargs: dict[str, Any] = {}
        if body:
            if cfg.login_body_format == "json":
                kwargs["json"] = body
            else:
                if not isinstance(body, dict):
                    raise BackendError("login_body must be an object for form logins")
                kwargs["data"] = {k: str(v) for k, v in body.items()}
        self.logins += 1
        resp = self._request(cfg.login_method, cfg.login_url, "login", **kwargs)
        if resp.status_code >= 400:
            raise BackendError(f"login failed: HTTP {resp.status_code}")
        if cfg.session == "token":
            token = first(_json(resp, "login"), cfg.token_path)
            if not isinstance(token, str | int) or token == "":
                raise BackendError(f"login response has no token at {cfg.token_path!r}")
            self._token = str(token)
        self._logged_in = True
        log.info("logged in to router", extra={"url": cfg.login_url, "session": cfg.session})

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise BackendError(
                f"{what} request timed out ({self.cfg.timeout_seconds:g} s)"
            ) from None
        except httpx.HTTPError as exc:
            raise BackendError(
                f"{what} request failed: {type(exc).__name__}: {exc}"[:300]
            ) from None

    # ---- devices ---------------------------------------------------------------------------

    def _fetch(self) -> httpx.Response:
        cfg = self.cfg
        headers: dict[str, str] = {}
        if self._token is not None and cfg.token_header:
            headers[cfg.token_header] = cfg.token_prefix + self._token
        kwargs: dict[str, Any] = {"headers": headers}
        if cfg.devices_body is not None:
            kwargs["json"] = fill(cfg.devices_body, {"token": self._token or ""})
        return self._request(cfg.devices_method, cfg.devices_url, "devices", **kwargs)

    def _expired(self, resp: httpx.Response) -> bool:
        if resp.status_code in (401, 403) or resp.is_redirect:
            return True
        if self.cfg.expired_path and resp.is_success:
            try:
                doc = resp.json()
            except ValueError:
                return False
            found = find(doc, self.cfg.expired_path)
            if found:
                value = found[0][1]
                if self.cfg.expired_value is None:
                    return bool(value)
                return str(value) == self.cfg.expired_value
        return False

    def devices(self) -> list[Device]:
        cfg = self.cfg
        if cfg.login_url and not self._logged_in:
            self._login()
        resp = self._fetch()
        if self._expired(resp):
            if not cfg.login_url:
                raise BackendError(f"devices request refused: HTTP {resp.status_code}")
            log.info("router session expired; logging in again")
            self._login()
            resp = self._fetch()
            if self._expired(resp):
                self._logged_in = False
                raise BackendError(
                    f"devices request refused after a fresh login: HTTP {resp.status_code}"
                )
        if not resp.is_success:
            raise BackendError(f"devices request failed: HTTP {resp.status_code}")
        return self.parse_devices(_json(resp, "devices"))

    def parse_devices(self, doc: Any) -> list[Device]:
        """Devices found in a devices response (public for tests and dry runs)."""
        cfg = self.cfg
        found = find(doc, cfg.devices_path)
        if len(found) == 1 and isinstance(found[0][1], list) and "*" not in cfg.devices_path:
            found = list(enumerate(found[0][1]))  # "data.devices" pointing at the list itself
        if not found and not find(doc, _container(cfg.devices_path)):
            raise BackendError(f"no devices at {cfg.devices_path!r} in the router's answer")
        devices = []
        for key, item in found:
            mac = key if cfg.mac_field == "@key" else first(item, cfg.mac_field)
            name = key if cfg.name_field == "@key" else first(item, cfg.name_field)
            devices.append(
                Device(
                    mac=str(mac) if isinstance(mac, str) else None,
                    name=str(name) if isinstance(name, str) and name else None,
                )
            )
        return devices


def _container(path: str) -> str:
    """``data.devices[*]`` → ``data.devices``: where an empty device list would be."""
    for suffix in ("[*]", ".*", "*"):
        if path.endswith(suffix):
            return path[: -len(suffix)] or "$"
    return path


def _json(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise BackendError(f"{what} response is not JSON") from None
