"""The OCI client's edges that Debian's registry does not show: the bearer-token flow, redirects
to another host, registries that ignore Range, answers that lie about digests or sizes.

The peers here are small HTTP servers written for each case (a stand-in for a cloud registry's
token service and storage redirect, which cannot run here); each speaks the real protocol on a
real socket. Everything a real registry does is tested against docker-registry in
tests/agent/test_pull.py and tests/cli/test_publish.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgeopt.proto.oci import Credentials, Registry, RegistryError, RegistryRef

BLOB = bytes(range(256)) * 64
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class Peer:
    """A threaded HTTP server whose handler is a function of (handler, method)."""

    def __init__(self, answer: Callable[[http.server.BaseHTTPRequestHandler, str], None]) -> None:
        self.seen: list[tuple[str, str, str]] = []
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self, method: str) -> None:
                peer.seen.append((method, self.path, self.headers.get("Authorization", "")))
                answer(self, method)

            def do_GET(self) -> None:
                self.handle_one("GET")

            def do_HEAD(self) -> None:
                self.handle_one("HEAD")

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(h: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
          headers: dict[str, str] | None = None, head: bool = False) -> None:  # fmt: skip
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if not head:
        h.wfile.write(body)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for p in made:
        p.close()


def test_the_bearer_token_flow(peers: list[Peer]) -> None:
    login = Credentials("fleet", "s3cret")
    token = "tok-123"

    def token_service(h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if h.headers.get("Authorization") != login.basic():
            reply(h, 401)
            return
        reply(h, 200, json.dumps({"token": token}).encode())

    tokens = Peer(token_service)
    peers.append(tokens)

    def registry(h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if h.headers.get("Authorization") != f"Bearer {token}":
            realm = f"http://127.0.0.1:{tokens.port}/token"
            reply(h, 401, headers={"WWW-Authenticate":
                                   f'Bearer realm="{realm}",service="reg",'
                                   'scope="repository:edgeopt/fleet:pull"'})  # fmt: skip
            return
        reply(h, 200, BLOB)

    reg = Peer(registry)
    peers.append(reg)
    client = Registry(RegistryRef.parse(f"oci+http://127.0.0.1:{reg.port}/edgeopt/fleet"), login)
    assert client.get_blob(DIGEST, len(BLOB)) == BLOB
    (asked,) = tokens.seen
    assert "service=reg" in asked[1] and "scope=repository%3Aedgeopt%2Ffleet%3Apull" in asked[1]
    assert [s[2] for s in reg.seen] == ["", f"Bearer {token}"]
    client.get_blob(DIGEST, len(BLOB))  # the token is kept: no second trip to the service
    assert len(tokens.seen) == 1
    client.close()

    wrong = Registry(RegistryRef.parse(f"oci+http://127.0.0.1:{reg.port}/edgeopt/fleet"),
                     Credentials("fleet", "nope"))  # fmt: skip
    with pytest.raises(RegistryError) as refused:
        wrong.get_blob(DIGEST, len(BLOB))
    assert refused.value.auth and "token service refused the credentials" in str(refused.value)
    wrong.close()


def test_a_redirect_to_storage_elsewhere_gets_no_credentials(peers: list[Peer]) -> None:
    storage = Peer(lambda h, m: reply(h, 200, BLOB))
    peers.append(storage)
    login = Credentials("fleet", "s3cret")

    def registry(h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if h.headers.get("Authorization") != login.basic():
            reply(h, 401, headers={"WWW-Authenticate": 'Basic realm="r"'})
            return
        # "localhost" is another host than 127.0.0.1 for the client: a storage service.
        reply(h, 307, headers={"Location": f"http://localhost:{storage.port}/signed?x=1"})

    reg = Peer(registry)
    peers.append(reg)
    client = Registry(RegistryRef.parse(f"oci+http://127.0.0.1:{reg.port}/r"), login)
    assert client.get_blob(DIGEST, len(BLOB)) == BLOB
    assert storage.seen == [("GET", "/signed?x=1", "")]  # no Authorization went there
    client.close()


def test_a_registry_that_ignores_range_is_read_from_the_start(peers: list[Peer]) -> None:
    reg = Peer(lambda h, m: reply(h, 200, BLOB))  # a 200 with the whole body, Range or not
    peers.append(reg)
    client = Registry(RegistryRef.parse(f"oci+http://127.0.0.1:{reg.port}/r"))
    got: list[bytes] = []
    assert client.fetch_blob(DIGEST, 1000, len(BLOB), got.append) == len(BLOB) - 1000
    assert b"".join(got) == BLOB[1000:]
    client.close()


def test_lies_about_digests_and_sizes_are_refused(peers: list[Peer]) -> None:
    def registry(h: http.server.BaseHTTPRequestHandler, method: str) -> None:
        if "/manifests/" in h.path:
            reply(h, 200, b'{"schemaVersion": 2}', head=method == "HEAD")
        else:
            reply(h, 200, BLOB + b"more")

    reg = Peer(registry)
    peers.append(reg)
    client = Registry(RegistryRef.parse(f"oci+http://127.0.0.1:{reg.port}/r"))
    with pytest.raises(RegistryError, match="does not match its digest"):
        client.get_manifest("sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="is 20 bytes, over 8"):
        client.get_manifest("latest", max_bytes=8)
    with pytest.raises(RegistryError, match="larger than"):
        client.fetch_blob(DIGEST, 0, len(BLOB), lambda _: None)
    with pytest.raises(RegistryError, match="does not match its digest"):
        client.get_blob(DIGEST, len(BLOB) + 4)
    with pytest.raises(RegistryError, match="not a sha256 digest"):
        client.blob_size("sha256:../../etc/passwd")
    client.close()


def test_basic_auth_is_not_sent_in_clear_beyond_loopback() -> None:
    client = Registry(RegistryRef.parse("oci+http://registry.lan:5000/r"), Credentials("a", "b"))
    with pytest.raises(RegistryError, match="asks for a password over plain HTTP"):
        client._answer('Basic realm="r"', "repository:r:pull")
    client.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:5000/r", "a registry is oci://"),
        ("oci://h:5000/", "a registry is oci://"),
        ("oci://h:99999/r", "bad port"),
        ("oci://h:5000/UPPER/case", "is not allowed"),
        ("oci://h:5000/r?x=1", "a registry is oci://"),
    ],
)
def test_registry_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegistryRef.parse(url)


def test_registry_url_forms() -> None:
    ref = RegistryRef.parse("oci://registry.lan/edgeopt/fleet")
    assert (ref.host, ref.port, ref.repository, ref.tls) == ("registry.lan", 443, "edgeopt/fleet",
                                                             True)  # fmt: skip
    assert (
        str(RegistryRef.parse("oci+http://127.0.0.1:5000/a/b")) == "oci+http://127.0.0.1:5000/a/b"
    )


def test_credentials_files(tmp_path: Path) -> None:
    docker = tmp_path / "config.json"
    pair = base64.b64encode(b"fleet:pa:ss").decode()
    docker.write_text(json.dumps({"auths": {"reg.lan:5000": {"auth": pair}}}))
    assert Credentials.from_file(docker, "reg.lan:5000") == Credentials("fleet", "pa:ss")
    assert Credentials.from_file(docker, "other:5000") is None
    plain = tmp_path / "plain.json"
    plain.write_text('{"username": "u", "password": "p"}')
    assert Credentials.from_file(plain, "any:1") == Credentials("u", "p")
    for text, message in (("not json", "registry credentials"), ("[1]", "want a JSON object"),
                          ('{"username": 1}', "want `username` and `password`"),
                          ('{"auths": {"r:1": {"auth": "!!"}}}', "not base64")):  # fmt: skip
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            Credentials.from_file(bad, "r:1")
