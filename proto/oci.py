"""A small client of the OCI distribution API: blobs by digest, manifests by tag, on the stdlib.

Both programs use it: the host publishes artifacts and desired states (edgeopt publish), the
agent in pull mode polls its desired state, downloads blobs with Range resume and pushes its
status (edgeopt.agent.pull). The registry is any OCI distribution server (Debian's
`docker-registry`, a cloud's, Harbor, Zot); the protocol is the distribution spec's:

    GET/HEAD /v2/REPO/manifests/REF     (REF a tag or a digest)
    PUT      /v2/REPO/manifests/TAG
    HEAD/GET /v2/REPO/blobs/DIGEST      (GET with "Range: bytes=N-" answers 206)
    POST     /v2/REPO/blobs/uploads/    then PUT LOCATION?digest=DIGEST with the bytes
    GET      /v2/REPO/tags/list         (paginated by Link headers)

Authentication answers the registry's challenge: HTTP Basic, or a bearer token fetched from the
realm the `WWW-Authenticate` header names (the docker token flow), both from `Credentials`.
TLS verifies the registry against the system's CAs or a CA file; `oci+http://` speaks plain
HTTP (a registry on loopback or a trusted network).

Nothing the registry answers is trusted: a manifest fetched by digest must hash to it, a blob's
bytes must hash to their digest before the caller keeps them, sizes are capped before bytes are
read, and a redirect never carries the credentials to another host. Standard library only, and
parsable by Python 3.8 (the agent's oldest).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict

__all__ = [
    "DIGEST_PATTERN",
    "MANIFEST_MEDIA_TYPE",
    "MAX_MANIFEST_BYTES",
    "TAG_PATTERN",
    "Credentials",
    "Registry",
    "RegistryError",
    "RegistryRef",
    "backoff",
    "check_digest",
    "sha256_digest",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 << 20
"""The largest manifest read (the distribution spec's floor for what registries accept)."""
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
REPOSITORY_PATTERN = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
CHUNK = 1 << 16
MAX_REDIRECTS = 3

Headers = Dict[str, str]


class RegistryError(Exception):
    """The registry refused, failed or could not be reached; `status` 0 for no answer."""

    def __init__(self, status: int, message: str, code: str = "", retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        """Seconds the registry asked to wait (Retry-After); 0 when it did not say."""

    @property
    def retryable(self) -> bool:
        """Worth trying again later: no answer, 5xx, 429, or a request timeout."""
        return self.status in (0, 408, 429) or self.status >= 500

    @property
    def auth(self) -> bool:
        """The credentials were refused (401, 403): trying again will not help."""
        return self.status in (401, 403)


def check_digest(digest: str) -> str:
    """`digest` if it is "sha256:" and 64 lower-case hex digits; else RegistryError(400)."""
    if not isinstance(digest, str) or not DIGEST_PATTERN.fullmatch(digest):
        raise RegistryError(400, f"not a sha256 digest: {str(digest)[:80]!r}")
    return digest


def sha256_digest(data: bytes) -> str:
    """The OCI digest of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RegistryRef:
    """Where a repository lives: `oci://HOST[:PORT]/REPO` (TLS) or `oci+http://...` (plain)."""

    host: str
    port: int
    repository: str
    tls: bool = True

    @classmethod
    def parse(cls, url: str) -> RegistryRef:
        """Read `oci://HOST:PORT/REPO`.

        Raises:
            ValueError: not of that form (the message shows the form).
        """
        parts = urllib.parse.urlsplit(url)
        form = "oci://HOST[:PORT]/REPOSITORY (oci+http:// for a registry without TLS)"
        if parts.scheme not in ("oci", "oci+https", "oci+http"):
            raise ValueError(f"a registry is {form}, got {url!r}")
        repository = parts.path.strip("/")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad port in {url!r}; a registry is {form}") from None
        if not parts.hostname or not repository or parts.query or parts.fragment:
            raise ValueError(f"a registry is {form}, got {url!r}")
        if not REPOSITORY_PATTERN.fullmatch(repository) or len(repository) > 255:
            raise ValueError(
                f"repository {repository!r} is not allowed: lower-case letters, digits and "
                "'.', '_', '-' between them, '/' between path parts"
            )
        tls = parts.scheme != "oci+http"
        return cls(parts.hostname, port or (443 if tls else 80), repository, tls)

    @property
    def registry(self) -> str:
        """HOST:PORT, the key credentials are filed under."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{'oci' if self.tls else 'oci+http'}://{self.registry}/{self.repository}"


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or a token as the password) for one registry."""

    username: str
    password: str

    @classmethod
    def from_file(cls, path: Path, registry: str) -> Credentials | None:
        """The credentials for `registry` (HOST:PORT) in a file.

        The file is either a docker `config.json` (`auths` → `HOST:PORT` → `auth`, base64 of
        "user:password", or `username` and `password`) or a JSON object with `username` and
        `password`. None when the file has nothing for that registry.

        Raises:
            ValueError: the file is unreadable, not JSON or malformed (the message says which).
        """
        try:
            raw = path.read_bytes()
            if len(raw) > 1 << 20:
                raise ValueError("larger than 1 MiB")
            data = json.loads(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"registry credentials {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"registry credentials {path}: want a JSON object")
        entry: Any = data
        if "auths" in data:
            auths = data["auths"] if isinstance(data["auths"], dict) else {}
            bare = registry.rsplit(":", 1)[0]
            entry = next(
                (auths[k] for k in (registry, f"https://{registry}", bare) if k in auths), None
            )
            if entry is None:
                return None
        if not isinstance(entry, dict):
            raise ValueError(f"registry credentials {path}: want an object for {registry}")
        if isinstance(entry.get("auth"), str):
            try:
                user, sep, password = (
                    base64.b64decode(entry["auth"], validate=True).decode("utf-8").partition(":")
                )
            except (ValueError, UnicodeDecodeError):
                raise ValueError(f"registry credentials {path}: `auth` is not base64") from None
            if not sep:
                raise ValueError(f"registry credentials {path}: `auth` is not user:password")
            return cls(user, password)
        name, secret = entry.get("username"), entry.get("password")
        if not isinstance(name, str) or not isinstance(secret, str):
            raise ValueError(f"registry credentials {path}: want `username` and `password` strings")
        return cls(name, secret)

    def basic(self) -> str:
        """The Authorization header's value for HTTP Basic."""
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` → ("bearer", {realm, service, ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _error_text(status: int, body: bytes) -> tuple[str, str]:
    """The OCI error body's first code and message, or a short text of the body."""
    try:
        errors = json.loads(body.decode("utf-8"))["errors"]
        first = errors[0]
        return str(first.get("code", ""))[:64], str(first.get("message", ""))[:300]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return "", text or http.client.responses.get(status, "")


class Registry:
    """One repository of one registry, over one kept-alive connection (not thread-safe).

    Counts what crossed the wire (`requests`, `bytes_in`, `bytes_out`) for status reports and
    figures.
    """

    def __init__(
        self,
        ref: RegistryRef,
        credentials: Credentials | None = None,
        *,
        ca_file: Path | None = None,
        timeout: float = 30.0,
        user_agent: str = "edgeopt",
    ) -> None:
        self.ref = ref
        self.credentials = credentials
        self.timeout = timeout
        self.user_agent = user_agent
        self._context: ssl.SSLContext | None = None
        if ref.tls:
            self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._conn: http.client.HTTPConnection | None = None
        self._authorization: str | None = None
        self._tokens: dict[str, str] = {}
        self.requests = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # --- the connection ---------------------------------------------------------------

    def close(self) -> None:
        """Close the kept-alive connection (the next request opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self, tls: bool, host: str, port: int | None) -> http.client.HTTPConnection:
        """A new connection (not yet connected), TLS checked with the registry's CA."""
        if tls:
            context = self._context or ssl.create_default_context()
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = self._open(self.ref.tls, self.ref.host, self.ref.port)
        return self._conn

    def _send(
        self, method: str, url: str, headers: Headers, body: bytes | Path | None
    ) -> http.client.HTTPResponse:
        """One request on the kept-alive connection, opened again once if the server closed it."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                self.requests += 1
                if isinstance(body, Path):
                    size = body.stat().st_size
                    with body.open("rb") as stream:
                        conn.request(method, url, body=stream,
                                     headers={**headers, "Content-Length": str(size)})  # fmt: skip
                    self.bytes_out += size
                else:
                    conn.request(method, url, body=body, headers=headers)
                    self.bytes_out += len(body or b"")
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt:
                    raise RegistryError(
                        0, f"{self.ref.registry} closed the connection: {exc}"
                    ) from None
            except ssl.SSLError as exc:
                self.close()
                raise RegistryError(0, f"TLS with {self.ref.registry} failed: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                reason = "timed out" if isinstance(exc, socket.timeout) else str(exc)
                raise RegistryError(0, f"cannot reach {self.ref.registry}: {reason}") from None
        raise AssertionError("unreachable")

    def _headers(self, extra: Headers | None, scope: str) -> Headers:
        headers = {"User-Agent": self.user_agent}
        auth = self._tokens.get(scope) or self._authorization
        if auth:
            headers["Authorization"] = auth
        headers.update(extra or {})
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        headers: Headers | None = None,
        body: bytes | Path | None = None,
        ok: tuple[int, ...] = (200,),
        push: bool = False,
    ) -> http.client.HTTPResponse:
        """A request; answers one auth challenge; raises RegistryError unless the status is ok.

        The response is returned unread (the caller reads or drains it).
        """
        scope = f"repository:{self.ref.repository}:{'pull,push' if push else 'pull'}"
        for attempt in (0, 1):
            response = self._send(method, path, self._headers(headers, scope), body)
            if response.status == 401 and attempt == 0 and self.credentials is not None:
                challenge = response.getheader("WWW-Authenticate", "")
                self._drain(response)
                self._answer(challenge, scope)
                continue
            if response.status in ok:
                return response
            data = self._drain(response, 64 << 10)
            code, message = _error_text(response.status, data)
            if response.status == 401:
                message = (
                    "no credentials for the registry (give a credentials file)"
                    if self.credentials is None
                    else f"the registry refused the credentials for {self.credentials.username!r}"
                )
            retry = response.getheader("Retry-After", "") or ""
            more = f" (retry after {retry} s)" if retry.isdigit() else ""
            raise RegistryError(
                response.status,
                f"{self.ref.registry} answered {response.status} to {method} "
                f"{path.split('?', maxsplit=1)[0]}: {code + ' ' if code else ''}{message}{more}",
                code,
                float(retry) if retry.isdigit() else 0.0,
            )
        raise AssertionError("unreachable")

    def _drain(self, response: http.client.HTTPResponse, limit: int = 1 << 20) -> bytes:
        data = response.read(limit)
        self.bytes_in += len(data)
        if not response.isclosed():  # more than we read: do not reuse the connection
            self.close()
        return data

    def _answer(self, challenge: str, scope: str) -> None:
        """Set the Authorization for the challenge: Basic, or a bearer token from the realm."""
        assert self.credentials is not None
        scheme, params = _challenge(challenge)
        if scheme == "basic":
            if not self.ref.tls and self.ref.host not in ("127.0.0.1", "localhost", "::1"):
                raise RegistryError(
                    401, f"{self.ref.registry} asks for a password over plain HTTP; use oci://"
                )
            self._authorization = self.credentials.basic()
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(401, f"{self.ref.registry}: unsupported challenge {challenge!r}")
        self._tokens[scope] = "Bearer " + self._token(params, scope)

    def _token(self, params: dict[str, str], scope: str) -> str:
        """The docker token flow: GET realm?service=..&scope=.. with Basic credentials."""
        assert self.credentials is not None
        realm = urllib.parse.urlsplit(params["realm"])
        if realm.scheme != "https" and not (realm.scheme == "http" and not self.ref.tls):
            raise RegistryError(401, f"refusing to send credentials to {params['realm']!r}")
        query = urllib.parse.urlencode(
            {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        )
        conn = self._open(realm.scheme == "https", realm.hostname or "", realm.port)
        try:
            self.requests += 1
            conn.request("GET", f"{realm.path or '/'}?{query}",
                         headers={"Authorization": self.credentials.basic(),
                                  "User-Agent": self.user_agent})  # fmt: skip
            response = conn.getresponse()
            data = response.read(64 << 10)
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError(
                0, f"cannot reach the token service {realm.hostname}: {exc}"
            ) from None
        finally:
            conn.close()
        if response.status != 200:
            raise RegistryError(
                401 if response.status in (401, 403) else response.status,
                f"the token service refused the credentials ({response.status})",
            )
        try:
            answer = json.loads(data.decode("utf-8"))
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or len(token) > 16384:
            raise RegistryError(502, "the token service answered no token")
        return token

    def _path(self, kind: str, reference: str) -> str:
        return f"/v2/{self.ref.repository}/{kind}/{urllib.parse.quote(reference, safe=':')}"

    # --- manifests --------------------------------------------------------------------

    def manifest_digest(self, tag: str) -> str | None:
        """The digest the tag points at (a HEAD), or None when there is no such tag."""
        try:
            response = self._request("HEAD", self._path("manifests", tag),
                                     headers={"Accept": MANIFEST_MEDIA_TYPE})  # fmt: skip
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        self._drain(response)
        digest = response.getheader("Docker-Content-Digest", "")
        if not DIGEST_PATTERN.fullmatch(digest):
            # Some registries leave the header out of HEAD; the body's hash says it.
            return self.get_manifest(tag)[1]
        return digest

    def get_manifest(
        self, reference: str, max_bytes: int = MAX_MANIFEST_BYTES
    ) -> tuple[dict[str, Any], str]:
        """A manifest by tag or digest: (its JSON, its digest); by digest, checked against it.

        Raises:
            RegistryError: 404 when there is none; 502 when it is too large, not JSON, or its
                bytes do not hash to the digest asked for.
        """
        response = self._request("GET", self._path("manifests", reference),
                                 headers={"Accept": MANIFEST_MEDIA_TYPE})  # fmt: skip
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            self.close()
            raise RegistryError(502, f"manifest {reference} is {length} bytes, over {max_bytes}")
        data = response.read(max_bytes + 1)
        self.bytes_in += len(data)
        if len(data) > max_bytes:
            self.close()
            raise RegistryError(502, f"manifest {reference} is over {max_bytes} bytes")
        digest = sha256_digest(data)
        if DIGEST_PATTERN.fullmatch(reference) and digest != reference:
            raise RegistryError(
                502,
                f"manifest {reference[:19]}... does not match its digest (got {digest[:19]}...)",
            )
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RegistryError(502, f"manifest {reference} is not JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise RegistryError(502, f"manifest {reference} is not a JSON object")
        return manifest, digest

    def put_manifest(self, tag: str, manifest: dict[str, Any]) -> str:
        """Store `manifest` under `tag`; returns its digest."""
        if not TAG_PATTERN.fullmatch(tag):
            raise RegistryError(400, f"not a tag: {tag!r}")
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        response = self._request(
            "PUT", self._path("manifests", tag), body=body,
            headers={"Content-Type": manifest.get("mediaType", MANIFEST_MEDIA_TYPE)},
            ok=(201, 200), push=True,
        )  # fmt: skip
        self._drain(response)
        return sha256_digest(body)

    def delete_tag(self, tag: str) -> None:
        """Remove what a tag points at (the registry must allow deletes); no tag is fine."""
        digest = self.manifest_digest(tag)
        if digest is not None:
            response = self._request("DELETE", self._path("manifests", digest), ok=(202, 200),
                                     push=True)  # fmt: skip
            self._drain(response)

    def tags(self, page: int = 1000) -> list[str]:
        """Every tag of the repository (following the Link pages)."""
        found: list[str] = []
        path: str | None = f"/v2/{self.ref.repository}/tags/list?n={page}"
        while path is not None:
            try:
                response = self._request("GET", path)
            except RegistryError as exc:
                if exc.status == 404:  # no repository yet
                    return found
                raise
            data = self._drain(response, MAX_MANIFEST_BYTES)
            try:
                tags = json.loads(data.decode("utf-8")).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(502, "the tag list is not JSON") from None
            found += [t for t in tags if isinstance(t, str) and TAG_PATTERN.fullmatch(t)]
            link = re.match(r"<([^>]+)>", response.getheader("Link", "") or "")
            nxt = urllib.parse.urlsplit(link.group(1)) if link else None
            path = f"{nxt.path}?{nxt.query}" if nxt and nxt.path.startswith("/v2/") else None
        return found

    # --- blobs ------------------------------------------------------------------------

    def blob_size(self, digest: str) -> int | None:
        """The size of a blob the repository has, or None."""
        try:
            response = self._request("HEAD", self._path("blobs", check_digest(digest)))
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        self._drain(response)
        length = response.getheader("Content-Length", "")
        return int(length) if length.isdigit() else None

    def push_blob(self, content: bytes | Path, digest: str | None = None) -> tuple[str, int, bool]:
        """Upload a blob unless the repository has it: (digest, size, whether bytes were sent).

        A file is streamed from disk (monolithic upload: POST, then PUT with the bytes).
        """
        if digest is None:
            digest = sha256_digest(content) if isinstance(content, bytes) else _file_digest(content)
        size = len(content) if isinstance(content, bytes) else content.stat().st_size
        if self.blob_size(digest) == size:
            return digest, size, False
        response = self._request("POST", f"/v2/{self.ref.repository}/blobs/uploads/",
                                 ok=(202,), push=True)  # fmt: skip
        self._drain(response)
        location = response.getheader("Location", "")
        target = urllib.parse.urlsplit(location)
        if target.netloc and target.hostname != self.ref.host:
            raise RegistryError(502, f"the upload location {location!r} is on another host")
        sep = "&" if target.query else ""
        path = f"{target.path}?{target.query}{sep}digest={urllib.parse.quote(digest)}"
        response = self._request(
            "PUT", path, body=content,
            headers={"Content-Type": "application/octet-stream"}, ok=(201,), push=True,
        )  # fmt: skip
        self._drain(response)
        return digest, size, True

    def get_blob(self, digest: str, max_bytes: int) -> bytes:
        """A small blob (a config), read whole and checked against its digest."""
        chunks: list[bytes] = []
        self.fetch_blob(digest, 0, max_bytes, chunks.append)
        data = b"".join(chunks)
        if sha256_digest(data) != digest:
            raise RegistryError(502, f"blob {digest[:19]}... does not match its digest")
        return data

    def fetch_blob(
        self, digest: str, offset: int, size: int, write: Callable[[bytes], None]
    ) -> int:
        """Stream a blob from `offset` (a Range request) into `write`; returns bytes written.

        `size` is what the caller expects in all: more is refused. The caller hashes what it
        keeps; a registry that ignores Range (200 instead of 206) is read from the start with
        the first `offset` bytes skipped.
        """
        check_digest(digest)
        path = self._path("blobs", digest)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._request("GET", path, headers=headers, ok=(200, 206, 302, 303, 307))
        outside: http.client.HTTPConnection | None = None
        for _ in range(MAX_REDIRECTS):
            if response.status not in (302, 303, 307):
                break
            self._drain(response)
            response, outside = self._redirected(response.getheader("Location", ""), headers,
                                                 outside)  # fmt: skip
        if response.status not in (200, 206):
            self._close_outside(outside)
            raise RegistryError(502, f"too many redirects fetching {digest[:19]}...")
        try:
            return self._read_blob(response, digest, offset, size, write)
        finally:
            self._close_outside(outside)

    def _close_outside(self, conn: http.client.HTTPConnection | None) -> None:
        if conn is not None:
            conn.close()

    def _redirected(
        self, location: str, headers: Headers, outside: http.client.HTTPConnection | None
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection | None]:
        """Follow a blob redirect: on the registry as any request, elsewhere without credentials.

        Cloud registries send blob downloads to their storage (a signed URL on another host);
        the registry's credentials never go there, and it must speak TLS when the registry does.
        """
        target = urllib.parse.urlsplit(location)
        path = f"{target.path}?{target.query}" if target.query else (target.path or "/")
        same = not target.netloc or (
            target.hostname == self.ref.host and (target.port or self.ref.port) == self.ref.port
        )
        if same:
            return self._request("GET", path, headers=headers,
                                 ok=(200, 206, 302, 303, 307)), outside  # fmt: skip
        if target.scheme != "https" and (self.ref.tls or target.scheme != "http"):
            raise RegistryError(502, f"the registry redirects to {location[:80]!r}; not followed")
        self._close_outside(outside)
        conn = self._open(target.scheme == "https", target.hostname or "", target.port)
        try:
            self.requests += 1
            conn.request("GET", path, headers={"User-Agent": self.user_agent, **headers})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RegistryError(0, f"cannot reach {target.hostname}: {exc}") from None
        if response.status not in (200, 206, 302, 303, 307):
            conn.close()
            raise RegistryError(response.status, f"{target.hostname} answered {response.status}")
        return response, conn

    def _read_blob(
        self,
        response: http.client.HTTPResponse,
        digest: str,
        offset: int,
        size: int,
        write: Callable[[bytes], None],
    ) -> int:
        skip = offset if response.status == 200 else 0
        if response.status == 206:
            start = re.match(r"bytes (\d+)-", response.getheader("Content-Range", "") or "")
            if start is None or int(start.group(1)) != offset:
                self.close()
                raise RegistryError(502, "the registry answered another range than asked")
        written, limit = 0, size - offset
        try:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                self.bytes_in += len(chunk)
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                if written + len(chunk) > limit:
                    raise RegistryError(502, f"blob {digest[:19]}... is larger than {size} bytes")
                if chunk:
                    write(chunk)
                    written += len(chunk)
            if response.length:  # the connection closed before the Content-Length arrived
                self.close()
                raise RegistryError(
                    0, f"the download of {digest[:19]}... broke off after {offset + written} "
                    f"bytes; {response.length} were still to come",
                )  # fmt: skip
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise RegistryError(0, f"the download of {digest[:19]}... broke off: {exc}") from None
        except BaseException:
            self.close()
            raise
        return written


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Seconds to wait before try `attempt` (1, 2, ...): full jitter, capped (AWS's rule)."""
    return float(rand() * min(cap, base * 2.0 ** min(attempt, 20)))
