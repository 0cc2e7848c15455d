"""The HTTP seam's transport: urllib3's ``PoolManager`` used directly, answers handed back
as ``requests.Response`` objects (what every caller of the seam reads).

``requests.Session.request`` did ten times the Python work of the request itself (merging
settings, cookies, hooks, nine URL parses, runtime protocol checks): three quarters of a
delivery worker's CPU. Here a call is one ``urlopen`` on a pool of deadline-bound
connections (``deadline.py``): TLS verified against certifi's bundle (as ``requests``
does), no retries, no redirects, no proxies from the environment, the body streamed (the
seam caps it). While a mock patches ``requests``' transport (``requests_patched()``) the
seam sends through ``requests`` instead, so ``responses`` and the test kit keep answering.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import certifi
import requests
import urllib3
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connectionpool import HTTPConnectionPool

from .deadline import DeadlinePoolManager

#: Connections kept alive per host (the most requests a delivery run has in flight).
POOL_SIZE = 512

_REAL_SEND = HTTPAdapter.send
_REAL_GET_ADAPTER = requests.Session.get_adapter
_lock = threading.Lock()
_shared: dict[str, urllib3.PoolManager] = {}
_pools: dict[str, HTTPConnectionPool] = {}  # by origin: skips the manager's per-call work


class Failure(Exception):
    """Carries the transport's exception to the seam, which reads it and raises its own."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.error = error


@dataclass(frozen=True)
class Body:
    """A request body: bytes, or form fields (encoded here); ``params`` go in the query."""

    data: Any = None
    params: dict[str, str] | None = None


def requests_patched() -> bool:
    """Whether a mock (``responses``, ``requests-mock``) has replaced ``requests``'
    transport: then calls must go through ``requests`` for it to see them."""
    return HTTPAdapter.send is not _REAL_SEND or requests.Session.get_adapter is not (
        _REAL_GET_ADAPTER
    )


def pool_manager() -> urllib3.PoolManager:
    manager = _shared.get("manager")
    if manager is None:
        with _lock:
            manager = _shared.get("manager")
            if manager is None:
                manager = DeadlinePoolManager(
                    num_pools=16,
                    maxsize=POOL_SIZE,
                    block=False,
                    retries=False,
                    cert_reqs="CERT_REQUIRED",
                    ca_certs=certifi.where(),
                )
                _shared["manager"] = manager
    return manager


def pool(origin: str) -> HTTPConnectionPool:
    """The connection pool of ``scheme://host[:port]`` (looked up once per origin)."""
    found = _pools.get(origin)
    if found is None:
        found = pool_manager().connection_from_url(origin)
        with _lock:
            found = _pools.setdefault(origin, found)
    return found


def reset() -> None:
    """Drop pooled connections (tests, and after a fork)."""
    with _lock:
        manager = _shared.pop("manager", None)
        _pools.clear()
    if manager is not None:
        manager.clear()


@sensitive_variables()  # headers and body hold the credentials
def send(
    method: str,
    url: str,
    headers: dict[str, str],
    body: Body,
    timeout: tuple[float, float],
) -> requests.Response:
    """One request; the answer's headers are read, its body is left to stream.

    Raises ``Failure`` (wrapping urllib3's exception) when no answer came."""
    data = body.data
    if isinstance(data, Mapping | list | tuple):
        data = urlencode(data, doseq=True).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if body.params:
        url += ("&" if "?" in url else "?") + urlencode(body.params, doseq=True)
    cut = url.find("/", url.find("://") + 3)
    origin, target = (url, "/") if cut < 0 else (url[:cut], url[cut:])
    try:
        raw = pool(origin).urlopen(
            method,
            target,
            body=data,
            headers=headers,
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        )
    except Exception as exc:  # read by the seam; its frames hold the request
        raise Failure(exc) from None
    return _response(method, url, raw)


def _response(method: str, url: str, raw: urllib3.BaseHTTPResponse) -> requests.Response:
    """What ``requests``' adapter builds from an answer, less its cookie jar work."""
    response = requests.Response()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.raw = raw
    response.reason = raw.reason or ""
    response.url = url
    sent = requests.PreparedRequest()
    sent.method, sent.url = method, url
    response.request = sent
    return response


def dumps(value: Any) -> bytes:
    """A JSON body as ``requests`` encodes one (NaN refused)."""
    return jsonlib.dumps(value, allow_nan=False).encode()
