"""The web player's HTTP server: only its two folders, right types, byte ranges, loopback default."""
from __future__ import annotations

import http.client
import json
import socket

import pytest

from featvid.errors import StreamError
from featvid.render.serve import WEB_DIR, parse_range, serve


@pytest.fixture
def stream_dir(tmp_path):
    """A folder shaped like a stream (the server only needs the files to exist)."""
    d = tmp_path / "scene.fvv"
    (d / "gop_00000").mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"format": "featvid-stream", "version": 1}))
    (d / "mlp.safetensors").write_bytes(b"\x08" + bytes(7) + b"{}      ")
    (d / "gop_00000" / "atlas.mp4").write_bytes(bytes(range(256)) * 4)  # 1024 known bytes
    (d / "gop_00000" / "mapping.fvmap").write_bytes(b"\x1f\x8b" + bytes(30))
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
    status, headers, body = get(server, "/stream/gop_00000/atlas.mp4", {"Range": "bytes=1000-"})
    assert status == 206 and body == data[1000:]
    status, headers, body = get(server, "/stream/gop_00000/atlas.mp4", {"Range": "bytes=-24"})
    assert status == 206 and body == data[-24:] and headers["Content-Range"] == f"bytes 1000-1023/{len(data)}"
    status, headers, _ = get(server, "/stream/gop_00000/atlas.mp4", {"Range": "bytes=5000-6000"})
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
