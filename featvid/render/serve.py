"""HTTP server for the web player: the player's static files at /, one stream's files under /stream/.

A small static server on purpose (no framework): it serves exactly two folders, the player's
assets (featvid/render/web) and the stream folder, and nothing else. Request paths are checked
component by component (no `..`, no empty or absolute components, no backslashes) and the file
found must still lie inside its folder once symlinks are resolved, so nothing outside the two
folders can be read. HTTP range requests are answered (206 / 416) because browsers seek media
with them. It binds the loopback interface unless told otherwise.

Hardening, since anything on the network may connect: a request target must be a path (origin
form, starting with "/"; `GET *` or an absolute URL is a 400, never a crash); names starting with
"." (hidden files, encode's temporary files) are never served (404); a connection that sends
nothing for `timeout` seconds is closed, and one whose request line and headers are not complete
`header_timeout` seconds after their first byte is closed too (a client trickling a byte a second
would otherwise hold its slot for ever); at most `max_connections` are served at once, and one
more is answered 503 and closed. Before it binds, the stream is opened and summarised with the
reader `featvid info` uses, so a stream every reader refuses is refused here too.

DNS rebinding: a web page on evil.example may resolve its own name to 127.0.0.1 and so reach a
loopback server from the user's browser. Every request's Host header is therefore checked
against an allow-list (`allowed_hosts`): the loopback names, the bound address, the address the
connection arrived on (an IP literal, which no DNS answer can spoof), this machine's name when
bound to every interface, and any name given. Others are answered 421 Misdirected Request. The
port in Host is not compared: a tunnel (ssh -L 9000:localhost:8000) changes it legitimately.
"""
from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from featvid.codecs import open_stream
from featvid.errors import ConfigError, StreamError

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
STREAM_PREFIX = "stream"  # URL folder under which the stream's files appear

# Types the player needs exactly: modules must be text/javascript, media video/mp4.
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".glsl": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".fvmap": "application/octet-stream",
    ".safetensors": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
_CHUNK = 1 << 16
READ_TIMEOUT_S = 10.0  # an idle or slow client is dropped after this long without a byte
HEADER_TIMEOUT_S = 5.0  # a request's line and headers must be complete this long after their first byte
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # Host values always served (with any port)
MAX_CONNECTIONS = 32  # the player opens a handful; more are turned away with 503
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"


def mime_type(path: Path) -> str:
    """Content-Type of a served file, by extension; unknown types are opaque bytes."""
    return MIME_TYPES.get(path.suffix.lower(), "application/octet-stream")


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without port, brackets or a trailing dot:
    "[::1]:8000" -> "::1", "LocalHost.:80" -> "localhost"."""
    h = header.strip().lower()
    if h.startswith("["):  # an IPv6 literal, e.g. [::1]:8000
        end = h.find("]")
        return h[1:end] if end > 0 else h
    name, colon, port = h.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        h = name
    return h.rstrip(".")


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side with two limits: `idle` seconds for any one read, and, once a
    request's first byte has come (after `arm()`), the rest of its headers within `header_timeout`.
    Past either, the read raises TimeoutError, which http.server answers by closing the connection."""

    def __init__(self, sock: socket.socket, idle: float, header_timeout: float) -> None:
        self._sock, self._idle, self._header_timeout = sock, idle, header_timeout
        self._armed = False
        self._deadline: float | None = None

    def readable(self) -> bool:
        return True

    def arm(self) -> None:
        """A request is awaited: its header clock starts at its first byte."""
        self._armed, self._deadline = True, None

    def disarm(self) -> None:
        """The headers are in: back to the idle timeout alone (also for writes on this socket)."""
        self._armed, self._deadline = False, None
        self._sock.settimeout(self._idle)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        timeout = self._idle
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request headers not complete after {self._header_timeout:g} s")
            timeout = min(timeout, left)
        self._sock.settimeout(timeout)
        n = self._sock.recv_into(buffer)
        if n and self._armed and self._deadline is None:
            self._deadline = time.monotonic() + self._header_timeout
        return n


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """First byte range of a `Range: bytes=...` header as inclusive (start, end) within `size` bytes.

    Returns None when the range cannot be satisfied (the caller answers 416). Only one range is
    served: for a multi-range request the first one is used, which RFC 9110 permits.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    first = spec.split(",")[0].strip()
    start_s, dash, end_s = first.partition("-")
    if not dash:
        return None
    try:
        if start_s == "":  # suffix range: the last N bytes
            n = int(end_s)
            if n <= 0 or size == 0:
                return None
            return max(0, size - n), size - 1
        start = int(start_s)
        end = int(end_s) if end_s else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return None
    return start, min(end, size - 1)


class PlayerServer(ThreadingHTTPServer):
    """A threaded HTTP server for one stream. Use `start()` / `close()` or run `serve_forever()`."""

    daemon_threads = True  # a stuck browser connection must not hold the process open

    def __init__(self, address: tuple[str, int], stream_dir: Path, web_dir: Path = WEB_DIR,
                 timeout: float = READ_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 header_timeout: float | None = None, allowed_hosts: Iterable[str] = ()) -> None:
        """timeout: seconds a connection may stay silent (while a request is awaited or read);
        max_connections: connections served at once (each holds a thread); header_timeout: seconds
        a request's line and headers may take from their first byte [default: HEADER_TIMEOUT_S];
        allowed_hosts: Host names served besides the loopback names and the bound address."""
        header_timeout = HEADER_TIMEOUT_S if header_timeout is None else header_timeout
        if not timeout > 0 or not header_timeout > 0 or max_connections < 1:
            raise ConfigError(f"serve needs timeout > 0, header_timeout > 0 and max_connections >= 1, got "
                              f"{timeout}, {header_timeout}, {max_connections}")
        self.stream_dir = stream_dir.resolve()
        self.web_dir = web_dir.resolve()
        self.read_timeout = float(timeout)
        self.header_timeout = float(header_timeout)
        hosts = {*LOOPBACK_HOSTS, host_name(address[0])}
        if address[0] in ("", "0.0.0.0", "::"):  # every interface: the machine's own name too
            hosts.add(socket.gethostname().lower())
        self.allowed_hosts = frozenset(hosts | {host_name(h) for h in allowed_hosts})
        self.max_connections = int(max_connections)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._active = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if ":" in address[0]:  # an IPv6 literal such as ::1
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return self._active

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        """Serve the connection on its own thread, or answer 503 and close it when all slots are taken."""
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            log.debug("turned away %s: %d connections already", client_address, self.max_connections)
            return
        with self._lock:
            self._active += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
        self._slots.release()

    @property
    def url(self) -> str:
        """The player's address, e.g. http://127.0.0.1:8000/"""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve from a background daemon thread (tests, `--open`). Stop with `close()`."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="featvid-serve", daemon=True)
        self._thread.start()
        return self._thread

    def close(self) -> None:
        """Stop serving (if started here) and release the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def resolve(self, url_path: str) -> Path | None | bool:
        """The file a URL path names: a Path; None when there is no such file or it is hidden (a
        name starting with "."): 404; False when the path tries to leave its folder (403). The
        caller passes only paths starting with "/"."""
        if not url_path.startswith("/"):
            return False
        parts = url_path.split("/")[1:]
        if parts == [""]:
            parts = ["index.html"]
        elif len(parts) > 1 and parts[-1] == "":
            parts = parts[:-1]  # a folder: there are no listings, so it ends in 404 below
        names = [unquote(p) for p in parts]
        # Reject traversal and anything that is not a plain name. Decoding happens per component,
        # so %2F cannot smuggle a separator in.
        for n in names:
            if n in ("", ".", "..") or "/" in n or "\\" in n or "\0" in n or (os.sep != "/" and os.sep in n):
                return False
        if any(n.startswith(".") for n in names):  # hidden files and encode's temporary files
            return None
        if names[0] == STREAM_PREFIX:
            root, names = self.stream_dir, names[1:]
            if not names:
                return None
        else:
            root = self.web_dir
        path = root.joinpath(*names)
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(root):  # a symlink pointing out of the folder
            return False
        return real if real.is_file() else None


class _Handler(BaseHTTPRequestHandler):
    server: PlayerServer
    protocol_version = "HTTP/1.1"  # keep-alive: the player fetches many small files
    server_version = "featvid"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # StreamRequestHandler applies it to the socket
        super().setup()
        self.rfile.close()  # http.server's own reader: ours below replaces it (an open one would keep the socket)
        self._reader = _DeadlineReader(self.connection, self.server.read_timeout, self.server.header_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.arm()  # the request line and headers are read under the header deadline
        super().handle_one_request()

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:
            self._reader.disarm()

    def _host_allowed(self) -> bool:
        """Whether the Host header names this server (see the module's note on DNS rebinding)."""
        host = self.headers.get("Host")
        if host is None:
            return False
        name = host_name(host)
        if name in self.server.allowed_hosts:
            return True
        local = self.connection.getsockname()[0]  # the address this connection arrived on
        return name == str(local).lower()

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._send(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(body=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _error(self, status: HTTPStatus, extra: dict[str, str] | None = None) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send(self, body: bool) -> None:
        if not self.path.startswith("/"):  # "*", an absolute URL, a bare name: not a path of ours
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST)
            return
        if not self._host_allowed():  # DNS rebinding, or a request meant for another server
            self.close_connection = True
            self._error(HTTPStatus.MISDIRECTED_REQUEST)
            log.debug("refused Host %r from %s", self.headers.get("Host"), self.address_string())
            return
        target = self.server.resolve(urlsplit(self.path).path)
        if target is False:
            self._error(HTTPStatus.FORBIDDEN)
            return
        if target is None:
            self._error(HTTPStatus.NOT_FOUND)
            return
        size = target.stat().st_size
        start, end, status = 0, size - 1, HTTPStatus.OK
        range_header = self.headers.get("Range")
        if range_header:
            r = parse_range(range_header, size)
            if r is None:
                self._error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"})
                return
            start, end, status = r[0], r[1], HTTPStatus.PARTIAL_CONTENT
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", mime_type(target))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        # Streams get re-encoded in place during development: never let the browser keep stale GOPs.
        self.send_header("Cache-Control", "no-cache")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body or length == 0:
            return
        try:
            with open(target, "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    chunk = f.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # gone, or stalled past the timeout
            self.close_connection = True
            log.debug("client closed or stalled the connection during %s", self.path)


def serve(stream_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, timeout: float = READ_TIMEOUT_S,
          max_connections: int = MAX_CONNECTIONS, header_timeout: float | None = None,
          allowed_hosts: Iterable[str] = ()) -> PlayerServer:
    """A bound (not yet serving) PlayerServer for the stream folder `stream_dir`.

    Call `.serve_forever()` (blocking) or `.start()` (background thread), and `.close()` to stop.
    port 0 picks a free port (see `.url`); timeout, max_connections, header_timeout and
    allowed_hosts as PlayerServer. Raises
    StreamError when the folder is not a finished stream or the stream is refused by the reader
    `featvid info` uses (a malformed manifest, a missing file, a size that is not the manifest's),
    ConfigError when the address cannot be bound.
    """
    stream_dir = Path(stream_dir)
    if not (stream_dir / "manifest.json").is_file():
        raise StreamError(f"{stream_dir}: not a featvid stream (no manifest.json)")
    open_stream(stream_dir, hwaccel="none").summary()  # what `featvid info` reads: refuse a broken stream
    if not (WEB_DIR / "index.html").is_file():
        raise StreamError(f"{WEB_DIR}: the web player's files are missing from the installation")
    try:
        return PlayerServer((host, port), stream_dir, timeout=timeout, max_connections=max_connections,
                            header_timeout=header_timeout, allowed_hosts=allowed_hosts)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e})") from e
