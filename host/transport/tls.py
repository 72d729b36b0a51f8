"""A small fleet certificate authority: the certificates agents serve and the host presents.

    init_ca(DIR)                       DIR/ca.pem (certificate) and DIR/ca.key (key, mode 0600)
    issue(DIR, "pi4", ["10.0.0.7"])    a server certificate for a board, its SANs from the hosts
    issue(DIR, "host", client=True)    a client certificate for the host (mutual TLS)
    write_issued(issued, OUT)          OUT/NAME.pem, OUT/NAME.key (0600), OUT/ca.pem

Keys are EC P-256 (ECDSA with SHA-256), which gRPC's BoringSSL and every OpenSSL a board runs
accept. `fingerprint` gives the `tls_pin` an inventory holds: "sha256:" and the hex digest of the
certificate's DER form. Only the host uses this module (the `cryptography` package is a host
dependency); the agent reads the files it writes with gRPC alone.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeopt.host.errors import TlsError

__all__ = [
    "CA_CERT",
    "CA_DAYS",
    "CA_KEY",
    "LEAF_DAYS",
    "PIN_PREFIX",
    "FleetCa",
    "Issued",
    "fetch_certificate",
    "fingerprint",
    "init_ca",
    "is_self_signed",
    "issue",
    "names_in",
    "self_signed",
    "write_issued",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_DAYS = 3650
"""A fleet CA lives ten years: replacing it means reissuing every board's certificate."""
LEAF_DAYS = 825
"""The longest leaf lifetime clients commonly accept; rotate earlier with SIGHUP."""
PIN_PREFIX = "sha256:"


@dataclass(frozen=True)
class FleetCa:
    """Where a fleet CA's files are."""

    cert: Path
    """The CA certificate (PEM): what agents (--client-ca) and the inventory (`ca`) trust."""
    key: Path
    """The CA's private key (PEM, mode 0600): keep it on the operator's machine only."""


@dataclass(frozen=True)
class Issued:
    """A certificate the fleet CA issued, with its new key, in memory."""

    name: str
    """The certificate's common name (a board's inventory name, or the host's)."""
    cert_pem: bytes
    """The certificate (PEM)."""
    key_pem: bytes
    """Its private key (PEM, PKCS#8, unencrypted)."""
    ca_pem: bytes
    """The issuing CA's certificate (PEM)."""
    hosts: tuple[str, ...]
    """Subject alternative names (IP addresses and DNS names); empty for a client certificate."""
    client: bool
    """Whether this is a client certificate (the host's, for mutual TLS)."""

    @property
    def pin(self) -> str:
        """The certificate's `tls_pin` ("sha256:<hex of the DER form>")."""
        return fingerprint(self.cert_pem)


def fingerprint(cert_pem: bytes) -> str:
    """A certificate's pin: "sha256:" and the hex SHA-256 of its DER form.

    Raises:
        TlsError: not a PEM certificate.
    """
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TlsError(f"not a PEM certificate: {exc}") from exc
    return PIN_PREFIX + hashlib.sha256(der).hexdigest()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write a file atomically with `mode` from the start (a key is never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # os.open's mode is filtered by the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip
"""A CA signs certificates (and revocation lists), nothing else."""


def init_ca(
    directory: Path, *, common_name: str = "edgeopt fleet CA", days: int = CA_DAYS
) -> FleetCa:
    """Make a new fleet CA in `directory` (created 0700 if missing).

    Raises:
        TlsError: the directory already holds a CA (a new one would orphan every certificate
            the old one issued), or cannot be written.
    """
    ca = FleetCa(directory / CA_CERT, directory / CA_KEY)
    if ca.cert.exists() or ca.key.exists():
        raise TlsError(
            f"{directory} already holds a fleet CA ({ca.cert.name}, {ca.key.name}); "
            "issue certificates with it, or choose another --dir"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(ca.key, _key_pem(key), 0o600)
        _write(ca.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise TlsError(f"cannot write the fleet CA into {directory}: {exc}") from exc
    return ca


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, bytes]:
    ca = FleetCa(directory / CA_CERT, directory / CA_KEY)
    try:
        cert_pem = ca.cert.read_bytes()
        key_pem = ca.key.read_bytes()
    except OSError as exc:
        raise TlsError(
            f"no fleet CA in {directory} ({exc.strerror or exc}): make one with `edgeopt tls init`"
        ) from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"the fleet CA in {directory} is unreadable: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"the fleet CA key in {directory} is not an EC key")
    return cert, key, cert_pem


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/:@" for c in host):
        raise TlsError(f"--host wants an IP address or a DNS name, got {host!r}")
    return x509.DNSName(host)


def issue(
    ca_dir: Path,
    name: str,
    hosts: Sequence[str] = (),
    *,
    client: bool = False,
    days: int = LEAF_DAYS,
) -> Issued:
    """Issue a certificate with a new EC P-256 key, signed by the fleet CA in `ca_dir`.

    Args:
        ca_dir: the folder `init_ca` wrote.
        name: the common name: the board's (or the host's) name.
        hosts: a server certificate's IP addresses and DNS names (its SANs); the host checks
            the address it dials (or the inventory's `server_name`) against them.
        client: issue a client certificate (for the host under mutual TLS) instead.
        days: validity.

    Raises:
        TlsError: no CA there, a host that is neither IP nor DNS name, or a server certificate
            without any host.
    """
    if not name or any(c in name for c in "/\\\n\r\0"):
        raise TlsError(f"a certificate name must be a plain name, got {name!r}")
    if not client and not hosts:
        raise TlsError(
            f"a server certificate for {name!r} needs the board's addresses: give "
            "--host IP_OR_DNS (repeatable)"
        )
    sans = [_san(h) for h in hosts]
    ca_cert, ca_key, ca_pem = _load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(
        name=name,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=_key_pem(key),
        ca_pem=ca_pem,
        hosts=tuple(hosts),
        client=client,
    )


def write_issued(issued: Issued, directory: Path) -> tuple[Path, Path]:
    """Write `NAME.pem` (0644), `NAME.key` (0600) and the CA's `ca.pem` into `directory`.

    Returns:
        The certificate's and the key's paths.

    Raises:
        TlsError: the folder cannot be written.
    """
    cert = directory / f"{issued.name}.pem"
    key = directory / f"{issued.name}.key"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(key, issued.key_pem, 0o600)
        _write(cert, issued.cert_pem, 0o644)
        if not (directory / CA_CERT).exists():
            _write(directory / CA_CERT, issued.ca_pem, 0o644)
    except OSError as exc:
        raise TlsError(f"cannot write the certificate of {issued.name!r}: {exc}") from exc
    return cert, key


def self_signed(name: str, hosts: Sequence[str], *, days: int = LEAF_DAYS) -> Issued:
    """A self-signed server certificate (no CA): what a board without a fleet CA serves.

    The host trusts such a certificate by its pin (`tls_pin`), not by a CA.
    """
    sans = [_san(h) for h in hosts]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert_pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return Issued(name, cert_pem, _key_pem(key), cert_pem, tuple(hosts), client=False)


def names_in(cert_pem: bytes) -> list[str]:
    """The names a certificate carries: its SAN IP addresses and DNS names, then its CN."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        names += san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    names += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return names


def is_self_signed(cert_pem: bytes) -> bool:
    """Whether a certificate names itself as its issuer (then it can be its own trust root)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.issuer == cert.subject


def fetch_certificate(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    timeout: float = 10.0,
) -> bytes:
    """The certificate (PEM) a TLS server at host:port presents, without verifying it.

    For pinning: the caller compares its `fingerprint` to the pin before trusting it. A client
    certificate is presented when given, since an agent under mutual TLS may end the handshake
    without one before its certificate can be read.

    Raises:
        OSError: no connection (refused, unreachable, timed out).
        ssl.SSLError: the handshake failed (the server does not speak TLS).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read, not trust: the pin decides
    context.set_alpn_protocols(["h2"])  # gRPC servers refuse a handshake without it
    if client_cert is not None and client_key is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    sni = server_name
    if sni is None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            sni = host  # SNI carries DNS names only
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")
