"""HTTPS on a real service (gunicorn, OpenSSL) with certificates from ``securecomm tls``:
a client trusts exactly the CA it was given, and a wrong host, an expired certificate,
an unknown CA and plain HTTP are each refused, naming the host."""

from __future__ import annotations

import base64
import datetime
import errno
import hashlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from securecomm.client.transport import ServiceClient
from securecomm.codes import Code
from securecomm.errors import ServiceError
from securecomm.identity import Identity, load_or_create
from securecomm.tls import HostCertificate, ca_spki_sha256, make_ca

from .conftest import free_port, stop_group, wait_healthy

CLI = [sys.executable, "-m", "securecomm.cli"]
CA = make_ca("test CA")


def _start(home: Path, host_cert: HostCertificate) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The relay of ``home`` on a free loopback port, over TLS with ``host_cert``."""
    cert, key = host_cert.write(home / "tls")
    (home / "securecomm.toml").write_text(f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    port = free_port()
    log = home / "relay.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*CLI, "relay", "serve", "--home", str(home), "--port", str(port), "--workers", "1"],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    return process, port, log


def _serve(home: Path, host_cert: HostCertificate) -> tuple[subprocess.Popen[bytes], str]:
    """Started, and answering over TLS a client that trusts the test CA."""
    process, port, log = _start(home, host_cert)
    url = f"https://127.0.0.1:{port}"
    try:
        wait_healthy(process, url, log, "relay", trust=CA.pem.decode())
    except BaseException:
        stop_group(process)
        raise
    return process, url


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[str]:
    process, url = _serve(tmp_path / "relay", CA.issue("relay", ["127.0.0.1", "localhost"]))
    try:
        yield url
    finally:
        stop_group(process)


def _health(url: str, trust: str | None) -> dict[str, str]:
    with ServiceClient(url, "relay", trust=trust) as client:
        answer: dict[str, str] = client.request("GET", "/healthz", sign=False).json()
        return answer


def test_a_client_given_the_ca_talks_to_the_service(relay: str) -> None:
    assert _health(relay, CA.pem.decode())["name"] == "relay"


def test_plain_http_to_the_service_gets_no_answer(relay: str) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(relay.replace("https://", "http://") + "/healthz", timeout=5)


def test_joining_a_tls_relay_at_http_hints_at_https(relay: str, tmp_path: Path) -> None:
    """`join http://RELAY` of a relay that speaks TLS said only "(ReadError)"."""
    joined = subprocess.run(
        [*CLI, "join", relay.replace("https://", "http://"), "--fingerprint",
         "aaaa bbbb cccc dddd", "--home", str(tmp_path / "h")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert joined.returncode == 1, joined.stderr
    assert "If it speaks TLS, its URL starts with https://" in joined.stderr, joined.stderr
    assert not (tmp_path / "h").exists()


def test_the_system_trust_store_does_not_know_a_private_ca(relay: str) -> None:
    with pytest.raises(ServiceError) as refused:
        _health(relay, None)
    assert refused.value.code == Code.TLS_REFUSED
    assert "127.0.0.1" in str(refused.value) and "a CA this system trusts" in str(refused.value)


def test_an_unknown_ca_is_refused(relay: str) -> None:
    other = make_ca("another CA")
    with pytest.raises(ServiceError) as refused:
        _health(relay, other.pem.decode())
    assert refused.value.code == Code.TLS_REFUSED
    assert "127.0.0.1" in str(refused.value) and "the CA in the network file" in str(refused.value)


@pytest.mark.parametrize(
    ("issued", "why"),
    [
        (lambda: CA.issue("relay", ["127.0.0.9", "relay.example.org"]), "mismatch"),
        (
            lambda: CA.issue(
                "relay",
                ["127.0.0.1"],
                days=1,
                not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3),
            ),
            "expired",
        ),
    ],
    ids=["another host", "expired"],
)
def test_a_certificate_for_another_host_or_out_of_date_is_refused(
    tmp_path: Path, issued: object, why: str
) -> None:
    assert callable(issued)
    process, url = _serve_unverified(tmp_path / "relay", issued())
    try:
        with pytest.raises(ServiceError) as refused:
            _health(url, CA.pem.decode())
        assert refused.value.code == Code.TLS_REFUSED
        assert why in str(refused.value) and "127.0.0.1" in str(refused.value)
    finally:
        stop_group(process)


def _serve_unverified(
    home: Path, host_cert: HostCertificate
) -> tuple[subprocess.Popen[bytes], str]:
    """A relay with a certificate no client should accept: ready once its port takes
    connections (nothing here turns certificate checks off)."""
    process, port, log = _start(home, host_cert)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"relay exited: {log.read_text()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"https://127.0.0.1:{port}"
        time.sleep(0.1)
    stop_group(process)
    raise RuntimeError("the relay did not listen")


def test_issued_certificates_are_what_browsers_and_openssl_accept() -> None:
    issued = CA.issue("alpha", ["127.0.0.3", "alpha.example.org"]).certificate
    names = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.3"]
    assert names.get_values_for_type(x509.DNSName) == ["alpha.example.org"]
    usage = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not issued.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = issued.not_valid_after_utc - issued.not_valid_before_utc
    assert lifetime <= datetime.timedelta(days=398)
    root = CA.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert root.ca and root.path_length == 0
    issued.verify_directly_issued_by(CA.certificate)
    assert len(ca_spki_sha256(CA.pem)) == 32


def test_tls_ca_prints_the_option_chromium_takes(tmp_path: Path) -> None:
    """`tls ca` printed "CA key hash (SHA-256 of its public key)" in hex, which no browser
    option reads; Chromium's --ignore-certificate-errors-spki-list takes the base64 of the
    SHA-256 of the certificate's SubjectPublicKeyInfo, as `up --tls` prints it."""
    made = subprocess.run(
        [*CLI, "tls", "ca", "--out", tmp_path / "ca"], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    certificate = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert f"start Chromium with --ignore-certificate-errors-spki-list={expected}\n" in (
        made.stdout
    ), made.stdout


def test_a_mistyped_address_or_name_gets_no_certificate(tmp_path: Path) -> None:
    """`tls issue --ip 999.1.1.1` issued a certificate for the DNS name "999.1.1.1", exit
    0, as it did for a name given to --ip: a certificate no client would ever match."""
    ca = tmp_path / "ca"
    assert subprocess.run([*CLI, "tls", "ca", "--out", ca], capture_output=True).returncode == 0
    for option, value, said in (
        ("--ip", "999.1.1.1", "argument --ip: '999.1.1.1' is not an IP address"),
        ("--ip", "alpha.example", "(a DNS name goes to --host)"),
        ("--host", "999.1.1.1", "'999.1.1.1' is neither a host name nor an IP address"),
        ("--host", "al pha", "'al pha' is neither a host name nor an IP address"),
        ("--host", "alpha-", "'alpha-' is neither a host name nor an IP address"),
    ):
        out = tmp_path / "out"
        issued = subprocess.run(
            [*CLI, "tls", "issue", "--ca", ca, "--name", "alpha", option, value, "--out", out],
            capture_output=True,
            text=True,
        )
        assert issued.returncode == 2 and said in issued.stderr, issued.stderr
        assert not out.exists()
    names = CA.issue("alpha", ["*.example.org", "alpha-1", "::1"]).certificate.extensions
    alternative = names.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alternative.get_values_for_type(x509.DNSName) == ["*.example.org", "alpha-1"]


def test_plain_http_off_loopback_is_refused_unless_asked_for(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*CLI, "relay", "serve", "--home", str(tmp_path), "--host", "0.0.0.0", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "--insecure-http" in refused.stderr and "[tls]" in refused.stderr
    assert not (tmp_path / "relay").exists()  # refused before anything was made


@pytest.mark.parametrize("party", ["relay", "custodian"])
def test_a_port_in_use_is_refused_at_once_in_a_sentence(tmp_path: Path, party: str) -> None:
    """`custodian serve` on a port another process held printed "listening" and then left
    gunicorn retrying the bind for half a minute before it gave up."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        if party == "custodian":
            load_or_create(tmp_path / "op" / "alpha-operator.key", "alpha-operator")
            operator = str(tmp_path / "op" / "alpha-operator.pub")
            made = subprocess.run(
                [*CLI, "custodian", "init", "--name", "alpha", "--home", str(tmp_path),
                 "--url", url, "--operator", operator],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
        started = time.monotonic()
        refused = subprocess.run(
            [*CLI, party, "serve", "--home", str(tmp_path), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert refused.returncode == 2, refused.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in refused.stderr, refused.stderr
    assert "another process listens there" in refused.stderr
    assert "listening on" not in refused.stderr
    assert time.monotonic() - started < 20  # gunicorn alone retries for 30 s


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("host", "url_host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        pytest.param(
            "::1",
            "[::1]",
            marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback"),
        ),
    ],
)
def test_the_port_is_held_from_the_moment_listening_is_said(
    tmp_path: Path, host: str, url_host: str
) -> None:
    """The service binds its port before it says "listening" and hands that socket to
    gunicorn. Before, it tried the port, closed it and let gunicorn bind its own a moment
    later: a process that took the port in between left gunicorn retrying for half a
    minute after "listening" was said. An IPv6 address is said as a URL writes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    serving = [*CLI, "relay", "serve", "--home", str(tmp_path), "--host", host, "--port"]
    url = f"http://{url_host}:{port}"
    with subprocess.Popen(
        [*serving, str(port)], stderr=subprocess.PIPE, start_new_session=True
    ) as process:
        try:
            assert process.stderr is not None
            first = process.stderr.readline()  # its first line (or none, if it exits)
            assert f"relay listening on {url}\n".encode() == first, first
            with socket.socket(family) as taker, pytest.raises(OSError) as taken:
                taker.bind((host, port))
            assert taken.value.errno == errno.EADDRINUSE
            (tmp_path / "stderr.log").write_text("(its stderr is read by this test)")
            wait_healthy(process, url, tmp_path / "stderr.log", "relay")
        finally:
            stop_group(process)


def test_a_network_file_naming_another_ca_is_refused_and_nothing_written(
    relay: str, tmp_path: Path
) -> None:
    """A client whose network file names a CA the service's certificate does not chain
    to: `register` stops at the first call, names the host, and leaves no key behind."""
    from securecomm.identity import load_or_create
    from securecomm.network import Card, Network

    relay_key = load_or_create(tmp_path / "relay" / "relay" / "identity.key", "relay")
    custodians = tuple(
        Card.issue(
            Identity.generate(name),
            "custodian",
            f"https://127.0.0.1:{free_port()}",
            Identity.generate(f"{name}-operator").public,
        )
        for name in ("alpha", "bravo")
    )
    other_ca = make_ca("not the services' CA").pem.decode()
    network = Network(Card.issue(relay_key, "relay", relay), custodians, 2, other_ca)
    network_file = tmp_path / "network.json"
    network_file.write_bytes(network.to_bytes())
    home = tmp_path / "dave"
    joined = subprocess.run([*CLI, "join", str(network_file), "--home", str(home)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    refused = subprocess.run(
        [*CLI, "register", "dave", "--home", str(home), "--no-passphrase"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert "TLS with 127.0.0.1 refused" in refused.stderr
    assert "the CA in the network file" in refused.stderr
    assert not (home / "users").exists()
