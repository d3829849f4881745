"""A private certificate authority and host certificates for the services' TLS
(``securecomm tls ca``, ``securecomm tls issue``), made with pyca ``cryptography``.

TLS hides metadata on the wire (who asks which custodian for what, when); it is not a
new root of trust: the relay's and custodians' keys stay pinned from the network file,
and everything the protocol carries is already sealed and signed end to end. So the CA
is kept simple: ECDSA P-256 keys (what OpenSSL and Chromium accept everywhere), a root
that may sign host certificates only (path length 0), and host certificates for TLS
servers only (serverAuth), valid 397 days, naming their hosts in subjectAltName.

A CA directory holds ``ca.pem`` (the certificate, public: it goes into the network
file) and ``ca.key`` (mode 0600: whoever holds it can impersonate every service to a
client that trusts the CA). A host directory holds ``NAME.pem`` (the host's
certificate, then the CA's) and ``NAME.key`` (mode 0600).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._files import write_atomic
from .errors import FormatError, ParameterError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CertificateAuthority",
    "HostCertificate",
    "ca_spki_sha256",
    "chromium_trust_flag",
    "load_certificates",
    "make_ca",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_YEARS = 10
HOST_DAYS = 397  # the longest validity browsers accept for a server certificate
#: Backdated so that a clock a little behind the CA's still accepts a new certificate.
SKEW = datetime.timedelta(minutes=5)
#: A DNS name (RFC 1123 labels, a wildcard first label allowed) whose last label is not all
#: digits: 999.1.1.1 is a mistyped address, not a name (it went in as one).
_HOST_NAME = re.compile(
    r"(?:\*\.)?(?:(?!-)[A-Za-z0-9-]{1,63}(?<!-)\.)*(?!-)(?=[A-Za-z0-9-]*[A-Za-z-])"
    r"[A-Za-z0-9-]{1,63}(?<!-)"
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _key_usage(**granted: bool) -> x509.KeyUsage:
    """The keyUsage extension with only the uses ``granted``."""
    unknown = set(granted) - set(_KEY_USAGES)
    if unknown:
        raise ValueError(f"no key usage named {sorted(unknown)}")
    return x509.KeyUsage(**{usage: granted.get(usage, False) for usage in _KEY_USAGES})


def load_certificates(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file; FormatError naming ``what`` if there is none."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise FormatError(f"{what}: not a PEM certificate") from None
    return certificates


def ca_spki_sha256(ca_pem: bytes) -> bytes:
    """SHA-256 of the CA certificate's SubjectPublicKeyInfo: what a browser is told to
    trust (Chromium's ``--ignore-certificate-errors-spki-list``), and a short way to
    name a CA in a message."""
    return _spki_sha256(load_certificates(ca_pem, "CA")[0])


def chromium_trust_flag(ca_pem: bytes) -> str:
    """The option that makes Chromium trust the CA (and nothing else it would not already):
    ``--ignore-certificate-errors-spki-list=`` and the base64 of ``ca_spki_sha256``."""
    spki = base64.b64encode(ca_spki_sha256(ca_pem)).decode("ascii")
    return f"--ignore-certificate-errors-spki-list={spki}"


def _spki_sha256(certificate: x509.Certificate) -> bytes:
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize()


def describe_cas(ca_pem: bytes) -> str:
    """Each CA certificate of ``ca_pem`` by its subject and its key's hash, for a person to
    compare (``'securecomm CA' sha256/k0l/jH1S...``)."""
    described = []
    for certificate in load_certificates(ca_pem, "CA"):
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else certificate.subject.rfc4514_string()
        spki = base64.b64encode(_spki_sha256(certificate)).decode("ascii")
        described.append(f"{name!r} sha256/{spki}")
    return ", ".join(described)


def host_names(chain_pem: bytes, what: str) -> list[str]:
    """The DNS names and IP addresses the first certificate of ``chain_pem`` (a service's
    own, before its CA's) is for, from its subjectAltName: what a client checks the host
    it reached against (RFC 6125; a browser and Python's ssl ignore the common name)."""
    certificate = load_certificates(chain_pem, what)[0]
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [
        *names.value.get_values_for_type(x509.DNSName),
        *(str(address) for address in names.value.get_values_for_type(x509.IPAddress)),
    ]


def is_for_host(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is for ``host``: an IP address only by the same
    address; a DNS name ignoring case, ``*.`` standing for one whole leftmost label."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    for name in names:
        if address is not None:
            try:
                if ipaddress.ip_address(name) == address:
                    return True
            except ValueError:
                pass
            continue
        name, wanted = name.lower().rstrip("."), host.lower().rstrip(".")
        if name == wanted:
            return True
        label, _, rest = wanted.partition(".")
        if name.startswith("*.") and label and rest and name[2:] == rest:
            return True
    return False


def certificate_problem(chain: Path, url: str) -> str | None:
    """Why a client reaching ``url`` would refuse the certificate chain in the file
    ``chain``, in a clause; None if it names the URL's host."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        names = host_names(chain.read_bytes(), str(chain))
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    except FormatError as exc:
        return str(exc)
    if is_for_host(names, host):
        return None
    named = ", ".join(names) if names else "no host (it has no subjectAltName)"
    return f"it is for {named}, not {host}: a client reaching {url} would refuse it"


@dataclass(frozen=True)
class HostCertificate:
    name: str
    certificate: x509.Certificate
    chain_pem: bytes  # the host's certificate, then the CA's
    key_pem: bytes

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path, key_path = directory / f"{self.name}.pem", directory / f"{self.name}.key"
        write_atomic(key_path, self.key_pem, private=True)
        write_atomic(cert_path, self.chain_pem)
        return cert_path, key_path


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return _cert_pem(self.certificate)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        try:
            cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
        except OSError as exc:
            raise ParameterError(
                f"{directory} is not a CA made by `securecomm tls ca`"
                f" (cannot read {exc.filename}: {exc.strerror})"
            ) from None
        certificate = load_certificates(cert_pem, str(cert_path))[0]
        try:
            key = serialization.load_pem_private_key(key_pem, None)
        except (ValueError, TypeError):
            raise FormatError(f"{key_path}: not an unencrypted PEM private key") from None
        public = certificate.public_key()
        if (
            not isinstance(key, ec.EllipticCurvePrivateKey)
            or not isinstance(public, ec.EllipticCurvePublicKey)
            or key.public_key().public_numbers() != public.public_numbers()
        ):
            raise FormatError(f"{key_path} is not the key of {cert_path}")
        return cls(certificate, key)

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(directory / CA_KEY, _key_pem(self.key), private=True)
        write_atomic(directory / CA_CERT, self.pem)
        return directory / CA_CERT, directory / CA_KEY

    def issue(
        self,
        name: str,
        hosts: Sequence[str],
        *,
        days: int = HOST_DAYS,
        not_before: datetime.datetime | None = None,
    ) -> HostCertificate:
        """A certificate for a TLS server known by ``hosts`` (DNS names or IP addresses)."""
        if not hosts:
            raise ParameterError("a host certificate needs at least one host name or address")
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                if not _HOST_NAME.fullmatch(host):
                    raise ParameterError(
                        f"{host!r} is neither a host name nor an IP address"
                    ) from None
                names.append(x509.DNSName(host.lower()))
        key = ec.generate_private_key(ec.SECP256R1())
        start = (not_before or _now()) - SKEW
        issuer_key = self.certificate.public_key()
        assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                _key_usage(digital_signature=True),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return HostCertificate(name, certificate, _cert_pem(certificate) + self.pem, _key_pem(key))


def make_ca(name: str = "securecomm private CA", *, years: int = CA_YEARS) -> CertificateAuthority:
    """A new root: may sign host certificates, nothing else (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = _now() - SKEW
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate, key)
