"""Cover images from URLs or files: checked, size-capped, retried, cached on disk by URL."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image, UnidentifiedImageError
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from search.settings import Settings

MAX_PIXELS = 40_000_000  # a 6,300 x 6,300 cover; larger ones are refused before decoding
MAX_REDIRECTS = 3
# Striped locks, one per URL hash stripe: memory stays flat at any catalogue size.
_URL_LOCKS = tuple(threading.Lock() for _ in range(64))


class CoverError(Exception):
    """A cover could not be used; the message says why (shown in summaries and the UI)."""


class _Retryable(CoverError):
    """A transient HTTP failure worth another try (a CoverError once the tries run out)."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


class CoverFetcher:
    """Loads cover images for songs; shared by ingestion and unseen-song insertion."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.max_bytes = settings.cover_max_bytes
        self.cache_dir = settings.cache_dir / "covers"
        self.session = session or requests.Session()

    def check_url(self, url: str) -> None:
        """Refuse non-http(s) URLs and hosts that resolve to private, loopback or link-local addresses."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise CoverError(f"cover URL scheme {parts.scheme!r} is not allowed (http or https only)")
        host = (parts.hostname or "").lower()
        if not host:
            raise CoverError("cover URL has no host")
        if host in self.settings.cover_allowed_hosts:
            return
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise CoverError(f"cover host {host!r} does not resolve") from error
        for *_, sockaddr in infos:
            if not _is_public(sockaddr[0]):
                raise CoverError(f"cover host {host!r} resolves to a non-public address {sockaddr[0]}")

    def fetch(self, url: str) -> bytes:
        """The bytes of a cover URL, from the disk cache or the network, checked to be an image (by its header)."""
        cached = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()
        # Songs of one album share a cover URL and load in parallel threads: one thread downloads
        # it while the others wait for its cached copy.
        with _URL_LOCKS[int(cached.name[:8], 16) % len(_URL_LOCKS)]:
            if cached.is_file():
                return cached.read_bytes()
            data = self._download(url)
            self.check(data)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # A name of its own per writer: another process may fetch the same URL at once.
            partial = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.part")
            partial.write_bytes(data)
            partial.replace(cached)
            return data

    @retry(
        retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
        wait=wait_exponential_jitter(initial=0.5, max=4),
        stop=stop_after_attempt(3),
        reraise=True,
    )
    def _download(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url)
            try:
                response = self.session.get(
                    url, timeout=self.settings.http_timeout_s, stream=True, allow_redirects=False
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                raise _Retryable(f"cover download failed: {error.__class__.__name__}") from error
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retryable(f"cover server answered HTTP {response.status_code}")
                if response.status_code != 200:
                    raise CoverError(f"cover URL answered HTTP {response.status_code}")
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("image/"):
                    raise CoverError(f"cover URL is not an image (content-type {content_type!r})")
                declared = int(response.headers.get("content-length") or 0)
                if declared > self.max_bytes:
                    raise CoverError(f"cover is {declared} bytes, over the {self.max_bytes}-byte cap")
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise CoverError(f"cover is over the {self.max_bytes}-byte cap")
                return bytes(body)
        raise CoverError(f"cover URL redirected more than {MAX_REDIRECTS} times")

    def read_file(self, path: Path) -> bytes:
        """The bytes of a local cover file, checked to be an image (by its header)."""
        if not path.is_file():
            raise CoverError(f"cover file {path} does not exist")
        if path.stat().st_size > self.max_bytes:
            raise CoverError(f"cover file {path} is over the {self.max_bytes}-byte cap")
        data = path.read_bytes()
        self.check(data)
        return data

    def load(self, ref: str, base_dir: Path | None = None) -> bytes:
        """Cover bytes from a URL, or from a file path (relative to `base_dir`)."""
        if "://" in ref:
            return self.fetch(ref)
        path = Path(ref).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return self.read_file(path)

    @staticmethod
    def check(data: bytes) -> Image.Image:
        """Open image bytes lazily (header only), refusing non-images and too many pixels."""
        try:
            image = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError) as error:
            raise CoverError("cover is not a readable image") from error
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise CoverError(f"cover is {width}x{height} pixels, over the {MAX_PIXELS}-pixel cap")
        return image

    @classmethod
    def decode(cls, data: bytes) -> Image.Image:
        """Decode checked image bytes to RGB."""
        image = cls.check(data)
        try:
            return image.convert("RGB")
        except (OSError, Image.DecompressionBombError) as error:
            raise CoverError(f"cover could not be decoded ({error})") from error
