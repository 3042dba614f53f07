"""The web player's HTTP server: only its two folders, right types, byte ranges, loopback default;
no hidden files, 400 for a target that is not a path, a read timeout, a header deadline, a
connection cap, a Host allow-list (DNS rebinding), and no start on a stream the readers refuse."""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import time

import pytest

from pathlib import Path

from featvid.errors import StreamError
from featvid.render import serve as serve_module
from featvid.render.serve import WEB_DIR, PlayerServer, host_name, parse_range, serve


@pytest.fixture
def stream_dir(web_stream, tmp_path):
    """A copy of the session's web stream (the server checks it before it starts), with a link
    out of it and hidden files in it."""
    d = Path(shutil.copytree(web_stream, tmp_path / "scene.fvv"))
    (d / "gop_00000" / ".atlas.mp4.x1y2.tmp").write_bytes(b"an encode's temporary file")
    (d / ".hidden").write_text("not for the network")
    (d / ".git").mkdir()
    (d / ".git" / "config").write_text("[core]")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the stream")
    (d / "escape.txt").symlink_to(secret)
    return d


@pytest.fixture
def server(stream_dir):
    srv = serve(stream_dir, port=0)
    srv.start()
    yield srv
    srv.close()


def get(srv, path: str, headers: dict | None = None, method: str = "GET"):
    """Send the path byte for byte (no client-side normalisation) and return (status, headers, body)."""
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True, skip_host="Host" in (headers or {}))
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/stream/../secret.txt", "/stream/gop_00000/../../secret.txt", "/%2e%2e/%2e%2e/etc/passwd",
    "/stream/..%2f..%2fsecret.txt", "/../../../../etc/passwd",
])
def test_dotdot_is_refused(server, path):
    status, _, body = get(server, path)
    assert status in (403, 404)
    assert b"outside" not in body and b"root:" not in body


@pytest.mark.parametrize("path", ["//etc/passwd", "/stream//etc/passwd", "/stream/%2Fetc%2Fpasswd", "/stream/C:%5Cwindows"])
def test_absolute_paths_are_refused(server, path):
    status, _, body = get(server, path)
    assert status in (403, 404)
    assert b"root:" not in body


def test_symlink_out_of_the_stream_is_refused(server):
    status, _, body = get(server, "/stream/escape.txt")
    assert status == 403
    assert b"outside" not in body


def test_missing_file_is_404(server):
    assert get(server, "/stream/gop_00009/atlas.mp4")[0] == 404
    assert get(server, "/stream/")[0] == 404
    assert get(server, "/no-such-file.js")[0] == 404


def test_player_and_stream_files_with_mime_types(server, stream_dir):
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body == (WEB_DIR / "index.html").read_bytes()
    expected = {
        "/stream/manifest.json": "application/json",
        "/stream/gop_00000/atlas.mp4": "video/mp4",
        "/stream/gop_00000/mapping.fvmap": "application/octet-stream",
        "/stream/mlp.safetensors": "application/octet-stream",
    }
    for js in WEB_DIR.glob("*.js"):
        expected[f"/{js.name}"] = "text/javascript"
    for css in WEB_DIR.glob("*.css"):
        expected[f"/{css.name}"] = "text/css"
    assert len(expected) >= 6, "the player's scripts and style sheet are missing"
    for path, mime in expected.items():
        status, headers, body = get(server, path)
        assert status == 200, path
        assert headers["Content-Type"].split(";")[0] == mime, path
        assert int(headers["Content-Length"]) == len(body)
    assert get(server, "/stream/manifest.json")[2] == (stream_dir / "manifest.json").read_bytes()


def test_range_requests(server, stream_dir):
    data = (stream_dir / "gop_00000" / "atlas.mp4").read_bytes()
    status, headers, body = get(server, "/stream/gop_00000/atlas.mp4", {"Range": "bytes=100-299"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes 100-299/{len(data)}"
    assert body == data[100:300]
    n = len(data)
    status, headers, body = get(server, "/stream/gop_00000/atlas.mp4", {"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    status, headers, body = get(server, "/stream/gop_00000/atlas.mp4", {"Range": "bytes=-24"})
    assert status == 206 and body == data[-24:] and headers["Content-Range"] == f"bytes {n - 24}-{n - 1}/{n}"
    status, headers, _ = get(server, "/stream/gop_00000/atlas.mp4", {"Range": f"bytes={n}-{n + 1000}"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    status, headers, body = get(server, "/stream/gop_00000/atlas.mp4", method="HEAD")
    assert status == 200 and headers["Accept-Ranges"] == "bytes" and body == b""


def test_parse_range():
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=10-", 10) is None
    assert parse_range("bytes=4-2", 10) is None
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=a-b", 10) is None


def _non_loopback_ipv4() -> str | None:
    """An address of this machine that is not loopback (connecting a UDP socket sends nothing)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.254.254.254", 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_binds_loopback_only_by_default(stream_dir):
    from featvid.cli import main

    host_option = next(p for p in main.commands["serve"].params if p.name == "host")
    assert host_option.default == "127.0.0.1"
    srv = serve(stream_dir, port=0)
    try:
        srv.start()
        assert srv.server_address[0] == "127.0.0.1"
        assert srv.url.startswith("http://127.0.0.1:")
        ip = _non_loopback_ipv4()
        if ip is not None:  # the same port on the machine's LAN address must not answer
            with pytest.raises(OSError):
                socket.create_connection((ip, srv.server_address[1]), timeout=2).close()
    finally:
        srv.close()


def test_refuses_a_folder_that_is_not_a_stream(tmp_path):
    with pytest.raises(StreamError, match="manifest"):
        serve(tmp_path, port=0)


def test_cli_serve_refuses_a_non_stream_cleanly(tmp_path):
    from click.testing import CliRunner

    from featvid.cli import main

    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2
    assert "not a featvid stream" in result.output and "Traceback" not in result.output


def raw(srv, request: bytes, timeout: float = 5) -> bytes:
    """Send `request` as is on a fresh connection and return everything the server answers."""
    with socket.create_connection(srv.server_address[:2], timeout=timeout) as c:
        c.sendall(request)
        out = b""
        while chunk := c.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("target", [b"*", b"http://evil.example/stream/manifest.json", b"stream/manifest.json",
                                    b"%2e%2e/x"])
def test_a_target_that_is_not_a_path_is_400(server, target):
    answer = raw(server, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert get(server, "/stream/manifest.json")[0] == 200  # and the server still serves


@pytest.mark.parametrize("path", ["/stream/.hidden", "/stream/gop_00000/.atlas.mp4.x1y2.tmp", "/stream/.git/config",
                                  "/stream/%2ehidden", "/.hidden"])
def test_hidden_files_are_not_served(server, stream_dir, path):
    status, _, body = get(server, path)
    assert status == 404 and b"temporary" not in body and b"network" not in body and b"core" not in body


def test_a_silent_connection_is_closed_after_the_read_timeout(stream_dir):
    srv = serve(stream_dir, port=0, timeout=0.3)
    srv.start()
    try:
        with socket.create_connection(srv.server_address[:2], timeout=5) as c:
            c.sendall(b"GET /stream/manifest.json HTTP/1.1\r\n")  # headers never finished
            t0 = time.monotonic()
            assert c.recv(1024) == b""  # closed by the server, not by our 5 s timeout
            assert time.monotonic() - t0 < 3
        deadline = time.monotonic() + 3
        while srv.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.active_connections == 0
    finally:
        srv.close()


def test_connections_beyond_the_cap_get_503_and_slots_come_back(stream_dir):
    srv = serve(stream_dir, port=0, max_connections=2)
    srv.start()
    idle = []
    try:
        for _ in range(2):
            idle.append(socket.create_connection(srv.server_address[:2], timeout=5))
        deadline = time.monotonic() + 3
        while srv.active_connections < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.active_connections == 2
        assert raw(srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        for c in idle:
            c.close()
        while srv.active_connections and time.monotonic() < deadline + 3:
            time.sleep(0.01)
        assert get(srv, "/stream/manifest.json")[0] == 200
    finally:
        for c in idle:
            c.close()
        srv.close()


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "gop_00000" / "atlas.mp4").write_bytes(b"cut"), "bytes on disk"),
    (lambda d: (d / "manifest.json").write_text(json.dumps({"format": "featvid-stream", "version": 1})), "channels"),
    (lambda d: (d / "mlp.safetensors").unlink(), "missing"),
])
def test_refuses_to_start_on_a_stream_the_readers_refuse(stream_dir, breakage, message):
    from click.testing import CliRunner

    from featvid.cli import main

    breakage(stream_dir)
    with pytest.raises(StreamError, match=message):
        serve(stream_dir, port=0)
    r = CliRunner().invoke(main, ["serve", str(stream_dir), "--port", "0"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and message in r.output, r.output


@pytest.fixture
def files_dir(tmp_path):
    """A folder to serve for the tests of the HTTP layer alone (PlayerServer does not read it as a
    stream, so these need no trained fixture)."""
    d = tmp_path / "files"
    d.mkdir()
    (d / "manifest.json").write_text('{"format": "featvid-stream"}')
    return d


def plain_server(files_dir, **kwargs) -> PlayerServer:
    srv = PlayerServer(("127.0.0.1", 0), files_dir, **kwargs)
    srv.start()
    return srv


def _trickle(srv, request: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send `request` a byte every `every` seconds until the server closes the connection (or
    `limit` seconds pass); (seconds until closed, what the server answered)."""
    with socket.create_connection(srv.server_address[:2], timeout=limit) as c:
        c.settimeout(every)
        t0 = time.monotonic()
        answer = b""
        for i in range(len(request) * 1000):
            if time.monotonic() - t0 > limit:
                break
            try:
                c.send(request[i % len(request):i % len(request) + 1])
            except OSError:  # reset by the server
                break
            try:
                chunk = c.recv(1024)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        return time.monotonic() - t0, answer


def test_a_trickling_client_is_dropped_at_the_header_deadline(files_dir, monkeypatch):
    monkeypatch.setattr(serve_module, "HEADER_TIMEOUT_S", 0.6)  # the default the server reads at start
    srv = plain_server(files_dir, timeout=5, max_connections=1)
    try:
        assert srv.header_timeout == 0.6
        # a byte every 0.1 s never trips the 5 s idle timeout, only the header deadline
        took, answer = _trickle(srv, b"GET /stream/manifest.json HTTP/1.1\r\nX-Slow: " + b"a" * 200, 0.1, 8)
        assert 0.5 < took < 3, took  # measured ~0.7 s
        assert answer == b""
        deadline = time.monotonic() + 3
        while srv.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert get(srv, "/stream/manifest.json")[0] == 200  # its only slot is free again
    finally:
        srv.close()


def test_the_header_deadline_starts_with_each_request_not_with_the_connection(files_dir):
    srv = plain_server(files_dir, timeout=5, header_timeout=0.3)
    try:
        host, port = srv.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            for _ in range(2):  # one keep-alive connection, idle longer than the deadline between requests
                conn.request("GET", "/stream/manifest.json")
                r = conn.getresponse()
                assert r.status == 200 and r.read() == (files_dir / "manifest.json").read_bytes()
                time.sleep(0.6)
        finally:
            conn.close()
    finally:
        srv.close()


def test_slow_clients_cannot_lock_others_out(files_dir):
    srv = plain_server(files_dir, timeout=5, max_connections=2, header_timeout=0.5)
    slow = []
    try:
        for _ in range(2):  # every slot taken by a client that started a request and never finishes it
            c = socket.create_connection(srv.server_address[:2], timeout=5)
            c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            slow.append(c)
        time.sleep(0.2)
        assert raw(srv, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").startswith(b"HTTP/1.1 503 ")
        for c in slow:  # dropped at the deadline, not at the 5 s idle timeout
            c.settimeout(3)
            assert c.recv(1024) == b""
        deadline = time.monotonic() + 3
        while srv.active_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert get(srv, "/stream/manifest.json")[0] == 200
    finally:
        for c in slow:
            c.close()
        srv.close()


def test_host_name():
    assert host_name("localhost:8000") == "localhost"
    assert host_name("LocalHost.") == "localhost"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("[::1]") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("evil.example:8000") == "evil.example"


@pytest.mark.parametrize("host, ok", [
    ("localhost", True), ("localhost:{port}", True), ("127.0.0.1:{port}", True), ("127.0.0.1", True),
    ("[::1]:{port}", True), ("[::1]", True), ("LOCALHOST:9000", True),  # a tunnel may change the port
    ("evil.example", False), ("evil.example:{port}", False), ("localhost.evil.example", False),
    ("127.0.0.1.nip.io:{port}", False), ("", False),
])
def test_only_the_loopback_names_and_the_bound_address_are_served(files_dir, host, ok):
    server = plain_server(files_dir)
    port = server.server_address[1]
    try:
        answer = raw(server, b"GET /stream/manifest.json HTTP/1.1\r\nHost: " + host.format(port=port).encode()
                     + b"\r\nConnection: close\r\n\r\n")
    finally:
        server.close()
    status = answer.split(b" ", 2)[1]
    assert status == (b"200" if ok else b"421"), answer[:80]
    if not ok:
        assert b"featvid-stream" not in answer


def test_a_request_without_host_is_refused_and_extra_names_can_be_allowed(files_dir):
    srv = plain_server(files_dir, allowed_hosts=["player.test"])
    try:
        assert raw(srv, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 421 ")
        assert get(srv, "/", {"Host": "player.test:80"})[0] == 200
        assert get(srv, "/", {"Host": "other.test"})[0] == 421
    finally:
        srv.close()
