"""The web player's HTTP server: only its two folders, right types, byte ranges, loopback default;
no hidden files, 400 for a target that is not a path, a read timeout, a connection cap, and no
start on a stream the readers refuse."""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import time

import pytest

from pathlib import Path

from featvid.errors import StreamError
from featvid.render.serve import WEB_DIR, parse_range, serve


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
        conn.putrequest(method, path, skip_accept_encoding=True)
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
