"""Cover images from URLs or files: checked, size-capped, retried, cached on disk by URL.

Every way one cover can fail ends as a CoverError with the reason, so a bad cover never stops a run.
"""

from __future__ import annotations

import copy
import email.utils
import hashlib
import http.client
import io
import ipaddress
import re
import socket
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import idna
import requests
import urllib3
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from search.settings import Settings

MAX_PIXELS = 40_000_000  # a 6,300 x 6,300 cover; larger ones are refused before decoding
MAX_REDIRECTS = 3
# Striped locks, one per URL hash stripe: memory stays flat at any catalogue size.
_URL_LOCKS = tuple(threading.Lock() for _ in range(64))
MAX_RETRY_AFTER_S = 10.0  # covers download in parallel: one slow host may hold a worker this long per try
COVER_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # album art; other Pillow plugins are never tried
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP")
_BACKOFF = wait_exponential_jitter(initial=0.5, max=4)
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")  # a host name after IDNA encoding (urlsplit lowercases it)

# IPv6 ranges whose traffic reaches an IPv4 host. Mapped and NAT64 addresses carry that host, which is
# judged instead (DNS64 networks give every IPv4-only host a 64:ff9b:: address). The rest are
# deprecated or local-use and can reach any IPv4 host, so they are refused outright.
_CARRIES_IPV4 = tuple(ipaddress.ip_network(net) for net in ("::ffff:0:0/96", "64:ff9b::/96"))
_REFUSED_IPV6 = tuple(
    ipaddress.ip_network(net)
    for net in (
        "::/96",  # IPv4-compatible, and :: and ::1
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # NAT64, local-use prefix
        "2001::/32",  # Teredo
        "2002::/16",  # 6to4
        "fec0::/10",  # site-local: deprecated, yet `is_global` in Python 3.11
    )
)


class CoverError(Exception):
    """A cover could not be used; the message says why (shown in summaries and the UI)."""


class _Retryable(CoverError):
    """A transient HTTP failure worth another try (a CoverError once the tries run out)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def is_public_address(address: str) -> bool:
    """Whether covers may be fetched from this IP address: globally routable unicast, judged through IPv6 forms of IPv4."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _REFUSED_IPV6):
            return False
        if any(ip in net for net in _CARRIES_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def _host_key(host: str) -> str:
    """A host as COVER_ALLOWED_HOSTS names it: lower case, no IPv6 brackets, no trailing dot."""
    return host.strip("[]").rstrip(".").lower()


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class _PeerCheckedConnection(HTTPConnection):
    """Checks the address a new socket actually reached, before a byte is sent.

    The check at connect time defeats DNS rebinding: a host that resolved to a public address when the
    URL was checked may resolve to a private one when requests resolves it again to connect.
    """

    def __init__(self, *args: Any, allowed_hosts: frozenset[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed_hosts = allowed_hosts

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if _host_key(self.host) not in self.allowed_hosts:
            peer = sock.getpeername()[0]
            if not is_public_address(peer):
                sock.close()
                raise CoverError(f"cover host {self.host!r} connected to a non-public address {peer}")
        return sock


class _PeerCheckedHTTPSConnection(_PeerCheckedConnection, HTTPSConnection):
    """The HTTPS form: TLS, SNI and certificate checks stay on the host name."""


class _PeerCheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PeerCheckedConnection


class _PeerCheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PeerCheckedHTTPSConnection


class _PeerCheckedAdapter(HTTPAdapter):
    """A requests adapter whose every connection refuses a non-public peer (hosts in `allowed_hosts` excepted)."""

    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self.allowed_hosts = allowed_hosts  # read by init_poolmanager, which the base __init__ calls
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The usual pool manager, with pools of peer-checked connections."""
        super().init_poolmanager(*args, **kwargs)
        # Pools pass unknown keywords on to their connections; the pool key is computed before, without them.
        self.poolmanager.pool_classes_by_scheme = {
            "http": partial(_PeerCheckedHTTPPool, allowed_hosts=self.allowed_hosts),
            "https": partial(_PeerCheckedHTTPSPool, allowed_hosts=self.allowed_hosts),
        }


def _transient(error: requests.RequestException) -> bool:
    """Whether another try may succeed: the connection failed, timed out or broke off mid-body."""
    if isinstance(error, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return False
    reason = error.args[0] if error.args else None
    if isinstance(error, requests.ConnectionError) and isinstance(reason, urllib3.exceptions.ProtocolError):
        cause = reason.args[-1]
        # The server did answer, but not in HTTP (a header line too long, too many headers, a bad
        # status line); a dropped connection is a ConnectionError and worth another try.
        if isinstance(cause, http.client.HTTPException) and not isinstance(cause, ConnectionError):
            return False
    return isinstance(error, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo else None


def _wait(state: RetryCallState) -> float:
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _Retryable) and error.retry_after is not None:
        return error.retry_after
    return _BACKOFF(state)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: another thread or process may write the same file at once.
    partial_path = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
    partial_path.write_bytes(data)
    partial_path.replace(path)


class CoverFetcher:
    """Loads cover images for songs; shared by ingestion and unseen-song insertion."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_bytes = settings.cover_max_bytes
        self.cache_dir = settings.cache_dir / "covers"
        self.uploads_dir = settings.cache_dir / "uploads"
        self.roots: tuple[Path, ...] = settings.cover_roots
        self.allowed_hosts = frozenset(_host_key(host) for host in settings.cover_allowed_hosts)
        self.session = self._session()

    def _session(self) -> requests.Session:
        session = requests.Session()
        # Proxies from the environment would take the connection, and so the address check, elsewhere.
        session.trust_env = False
        adapter = _PeerCheckedAdapter(self.allowed_hosts)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def __copy__(self) -> CoverFetcher:
        twin = object.__new__(type(self))
        vars(twin).update(vars(self))  # the same session
        return twin

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if name != "session"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self.session = self._session()  # a worker process's fetcher has a session of its own

    def with_roots(self, *roots: Path) -> CoverFetcher:
        """This fetcher, also reading local covers under `roots` (for one call, such as a page upload)."""
        return self.only_roots(*self.roots, *roots)

    def only_roots(self, *roots: Path) -> CoverFetcher:
        """This fetcher, reading local covers under `roots` alone (besides a catalogue's own folder)."""
        narrowed = copy.copy(self)
        narrowed.roots = roots
        return narrowed

    def check_url(self, url: str) -> None:
        """Refuse, before connecting, a URL that is not http(s), is malformed, or names a non-public host."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise CoverError(f"cover URL {_short(url)!r} is malformed ({error})") from error
        if parts.scheme not in ("http", "https"):
            raise CoverError(f"cover URL scheme {parts.scheme!r} is not allowed (http or https only)")
        if not host:
            raise CoverError("cover URL has no host")
        if port == 0:
            raise CoverError(f"cover URL {_short(url)!r} has port 0")
        if _host_key(host) in self.allowed_hosts:
            return
        # Connections are checked again on the address they reach; refusing here means a host known
        # to be private is never even connected to.
        for address in self._addresses(host, port or 443):
            if not is_public_address(address):
                raise CoverError(f"cover host {host!r} resolves to a non-public address {address}")

    @staticmethod
    def _addresses(host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            # The same IDNA encoding as requests, so both look up the same name.
            name = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise CoverError(f"cover host {_short(host)!r} is not a valid host name ({error})") from error
        if not _HOST_NAME.fullmatch(name):  # a NUL or space would cut or garble the name looked up
            raise CoverError(f"cover host {_short(host)!r} is not a valid host name")
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:  # UnicodeError: a label over 63 characters
            raise CoverError(f"cover host {_short(host)!r} does not resolve ({error})") from error
        return [str(sockaddr[0]) for *_, sockaddr in infos]

    def fetch(self, url: str) -> bytes:
        """The bytes of a cover URL, from the disk cache or the network, checked to be an image (by its header)."""
        cached = self.cache_dir / hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
        # Songs of one album share a cover URL and load in parallel threads: one thread downloads
        # it while the others wait for its cached copy (worker processes may each download it once).
        with _URL_LOCKS[int(cached.name[:8], 16) % len(_URL_LOCKS)]:
            if cached.is_file():
                return cached.read_bytes()
            data = self._download(url)
            self.check(data)
            _write_atomically(cached, data)
            return data

    @retry(
        retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
        wait=_wait,
        stop=stop_after_attempt(3),
        reraise=True,
    )
    def _download(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url)
            try:
                with self.session.get(
                    url, timeout=self.settings.http_timeout_s, stream=True, allow_redirects=False
                ) as response:
                    if response.is_redirect and response.next is not None:
                        url = str(response.next.url)
                        continue
                    return self._body(response)
            except requests.RequestException as error:
                reason = f"cover download failed: {error.__class__.__name__}: {_short(str(error))}"
                raise (_Retryable(reason) if _transient(error) else CoverError(reason)) from error
            except (urllib3.exceptions.HTTPError, ValueError) as error:  # what requests lets through unwrapped
                raise CoverError(f"cover URL {_short(url)!r} or its answer is malformed ({_short(str(error))})") from error
        raise CoverError(f"cover URL redirected more than {MAX_REDIRECTS} times")

    def _body(self, response: requests.Response) -> bytes:
        status = response.status_code
        if status == 429 or status >= 500:
            wait = _retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                raise CoverError(
                    f"cover server answered HTTP {status} and asks to wait {wait:.0f} s "
                    f"(a cover waits at most {MAX_RETRY_AFTER_S:.0f} s)"
                )
            raise _Retryable(f"cover server answered HTTP {status}", wait)
        if status != 200:
            raise CoverError(f"cover URL answered HTTP {status}")
        content_type = response.headers.get("content-type", "")
        if not content_type.lower().startswith("image/"):  # media types are case-insensitive
            raise CoverError(f"cover URL is not an image (content-type {_short(content_type)!r})")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise CoverError(f"cover is {declared} bytes, over the {self.max_bytes}-byte cap")
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body.extend(chunk)
            if len(body) > self.max_bytes:
                raise CoverError(f"cover is over the {self.max_bytes}-byte cap")
        return bytes(body)

    def load(self, ref: str, base_dir: Path | None = None) -> bytes:
        """Cover bytes from a URL, or from a file inside `base_dir` (the catalogue's folder) or a cover root."""
        if "://" in ref:
            return self.fetch(ref)
        return self._read_file(self._local_path(ref, base_dir))

    def _local_path(self, ref: str, base_dir: Path | None) -> Path:
        """The real path of a local cover (symlinks followed), refused outside the allowed folders."""
        try:
            path = Path(ref).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            resolved = path.resolve()
            allowed = [root.resolve() for root in ((base_dir,) if base_dir else ()) + self.roots]
        except (OSError, RuntimeError, ValueError) as error:  # no home folder, a loop, a NUL byte
            raise CoverError(f"cover path {_short(ref)!r} cannot be resolved ({error})") from error
        if not any(resolved.is_relative_to(root) for root in allowed):
            catalogue = f"the catalogue's folder {base_dir} and " if base_dir else ""
            roots = ", ".join(str(root) for root in self.roots) or "none set"
            raise CoverError(
                f"cover path {_short(ref)!r} is outside {catalogue}the COVER_ROOTS folders ({roots}); "
                "add its folder to COVER_ROOTS to allow it"
            )
        return resolved

    def _read_file(self, path: Path) -> bytes:
        """The bytes of a local cover file, checked to be an image (by its header)."""
        if not path.is_file():
            raise CoverError(f"cover file {path} {'is not a regular file' if path.exists() else 'does not exist'}")
        try:
            if path.stat().st_size > self.max_bytes:
                raise CoverError(f"cover file {path} is over the {self.max_bytes}-byte cap")
            with path.open("rb") as file:
                data = file.read(self.max_bytes + 1)  # the file may have grown since
        except OSError as error:
            raise CoverError(f"cover file {path} cannot be read ({error.strerror})") from error
        if len(data) > self.max_bytes:
            raise CoverError(f"cover file {path} is over the {self.max_bytes}-byte cap")
        self.check(data)
        return data

    def save_upload(self, data: bytes) -> Path:
        """Check an uploaded cover (size, PNG/JPEG/WebP by content, pixels, decoding), then keep it in the
        cache's uploads folder; nothing is written for a refused one."""
        if len(data) > self.max_bytes:
            raise CoverError(f"the cover is {len(data)} bytes, over the {self.max_bytes}-byte cap")
        self.decode(data, UPLOAD_FORMATS)
        path = self.uploads_dir / hashlib.sha256(data).hexdigest()
        if not path.is_file():
            _write_atomically(path, data)
        return path

    @staticmethod
    def check(data: bytes, formats: tuple[str, ...] = COVER_FORMATS) -> Image.Image:
        """Open image bytes lazily (header only), refusing other formats and too many pixels."""
        try:
            image = Image.open(io.BytesIO(data), formats=formats)
        except Image.DecompressionBombError as error:  # Pillow's own cap, far above ours, hit while opening
            raise CoverError(f"cover is over the {MAX_PIXELS}-pixel cap ({error})") from error
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise CoverError(f"cover is not a readable image ({', '.join(formats)})") from error
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise CoverError(f"cover is {width}x{height} pixels, over the {MAX_PIXELS}-pixel cap")
        return image

    @classmethod
    def decode(cls, data: bytes, formats: tuple[str, ...] = COVER_FORMATS) -> Image.Image:
        """Decode checked image bytes to RGB."""
        image = cls.check(data, formats)
        try:
            return image.convert("RGB")
        except Exception as error:  # noqa: BLE001 (Pillow's decoders raise many types on corrupt data)
            raise CoverError(f"cover could not be decoded ({error})") from error
