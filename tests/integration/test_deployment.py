"""Every party on its own host (issue 12, docs/deployment.md), as separate people would
set it up: the relay, five custodians, their five operators, alice and bob (and later
carol), each in its own home, each service bound to its own loopback address
(127.0.0.2 for the relay, 127.0.0.3-7 for the custodians). They are set up only with
the CLI and exchange nothing but cards, operators' ``.pub`` files and the network file,
through one ``exchange`` directory that stands for e-mail or a USB stick.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from securecomm.client.transport import tls_context
from securecomm.identity import Identity
from securecomm.network import Card, Network

from .conftest import stop_group, wait_healthy

CLI = [sys.executable, "-m", "securecomm.cli"]
CUSTODIANS = ("alpha", "bravo", "charlie", "delta", "echo")
RELAY_ADDRESS = "127.0.0.2"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Deployment:
    root: Path
    exchange: Path
    homes: dict[str, Path] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    passphrases: dict[str, Path] = field(default_factory=dict)
    fingerprint: str = ""
    scheme: str = "http"
    created: str = ""  # what `network create` printed

    @property
    def trust(self) -> str | None:
        """The CA a client of this deployment trusts, over HTTPS."""
        return (self.exchange / "ca.pem").read_text() if self.scheme == "https" else None

    def cli(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"securecomm {' '.join(map(str, args))} -> {done.returncode}\n{done.stderr}"
            )
        return done

    def join_from_relay(
        self, home: Path, *, unquoted: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """What a newcomer types: the relay's URL, the network's fingerprint they were
        told, and over HTTPS the network's CA. ``unquoted``: the fingerprint pasted as
        eight words, with the URL after them."""
        ca: list[str | Path] = ["--tls-ca", self.exchange / "ca.pem"] if self.trust else []
        if unquoted:
            return self.cli("join", *ca, "--home", home, "--fingerprint",
                            *self.fingerprint.split(), self.urls["relay"], check=False)  # fmt: skip
        return self.cli("join", self.urls["relay"], "--fingerprint", self.fingerprint, *ca,
                        "--home", home, check=False)  # fmt: skip

    def operator_key(self, custodian: str) -> list[str | Path]:
        return ["--passphrase-file", self.passphrases[f"{custodian}-operator"]]

    def start(self, name: str) -> None:
        """Start a service from its own home: where it listens is in that home."""
        command = [*CLI, "relay" if name == "relay" else "custodian", "serve"]
        command += ["--home", str(self.homes[name]), "--workers", "1"]
        log = open(self.root / f"{name}.log", "ab")
        self.services[name] = subprocess.Popen(
            command, stdout=log, stderr=log, start_new_session=True, env=self.user_env()
        )
        log.close()

    def user_env(self) -> dict[str, str]:
        """The environment of the user who runs a service: their own (empty) HOME, where
        a service must write nothing."""
        self.user_home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        return env | {"HOME": str(self.user_home)}

    @property
    def user_home(self) -> Path:
        return self.root / "user-home"

    def wait(self, name: str) -> None:
        log = self.root / f"{name}.log"
        wait_healthy(self.services[name], self.urls[name], log, name, trust=self.trust)

    def stop(self, name: str) -> None:
        process = self.services.pop(name, None)
        if process is not None:
            stop_group(process)


def _hand_over(path: Path, exchange: Path) -> Path:
    """What one party gives another: a copy, in the exchange directory."""
    return Path(shutil.copy(path, exchange / path.name))


def _certificate(d: Deployment, party: str, address: str) -> None:
    """The coordinator issues the party's TLS certificate and hands it over, key and all
    (made apart, then moved: no copy stays behind), and the party names it in its
    settings."""
    issued = d.root / "coordinator" / "issued"
    d.cli("tls", "issue", "--ca", d.root / "coordinator" / "ca", "--name", party,
          "--ip", address, "--out", issued)  # fmt: skip
    own = d.homes[party] / "tls"
    own.mkdir()
    for suffix in (".pem", ".key"):
        shutil.move(issued / f"{party}{suffix}", own / f"{party}{suffix}")
    with open(d.homes[party] / "securecomm.toml", "a") as settings:
        settings.write(f'\n[tls]\ncert = "tls/{party}.pem"\nkey = "tls/{party}.key"\n')


@pytest.fixture(scope="module", params=["http", "https"])
def deployment(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    """The same deployment over plain HTTP on loopback, and over HTTPS with a private CA
    made by the coordinator (``securecomm tls``)."""
    scheme: str = request.param
    root = tmp_path_factory.mktemp(f"deployment-{scheme}")
    d = Deployment(root, root / "exchange", scheme=scheme)
    d.exchange.mkdir()
    if scheme == "https":
        d.cli("tls", "ca", "--out", root / "coordinator" / "ca")
        _hand_over(root / "coordinator" / "ca" / "ca.pem", d.exchange)
    secrets = root / "passphrases"  # each person's memory, outside every home
    secrets.mkdir()
    # Each operator, on their own machine: a passphrase-protected key; only the .pub leaves.
    for custodian in CUSTODIANS:
        name = f"{custodian}-operator"
        d.homes[name] = root / name
        d.passphrases[name] = secrets / name
        d.passphrases[name].write_text(f"{name} passphrase\n")
        d.cli("keygen", name, "--out", d.homes[name] / "users", *d.operator_key(custodian))
        _hand_over(d.homes[name] / "users" / f"{name}.pub", d.exchange)
    # Each custodian, on its own host, given its operator's .pub.
    for number, custodian in enumerate(CUSTODIANS, start=3):
        address = f"127.0.0.{number}"
        d.homes[custodian] = root / custodian
        d.urls[custodian] = f"{scheme}://{address}:{_free_port(address)}"
        d.cli(
            "custodian", "init", "--name", custodian, "--home", d.homes[custodian],
            "--url", d.urls[custodian], "--operator", d.exchange / f"{custodian}-operator.pub",
        )  # fmt: skip
        if scheme == "https":
            _certificate(d, custodian, address)
        _hand_over(d.homes[custodian] / f"{custodian}.card.json", d.exchange)
    d.homes["relay"] = root / "relay"
    d.urls["relay"] = f"{scheme}://{RELAY_ADDRESS}:{_free_port(RELAY_ADDRESS)}"
    d.cli("relay", "init", "--home", d.homes["relay"], "--url", d.urls["relay"])
    if scheme == "https":
        _certificate(d, "relay", RELAY_ADDRESS)
    _hand_over(d.homes["relay"] / "relay.card.json", d.exchange)
    # Whoever sets the network up gathers the cards.
    cards = [arg for c in CUSTODIANS for arg in ("--custodian", d.exchange / f"{c}.card.json")]
    ca: list[str | Path] = ["--tls-ca", d.exchange / "ca.pem"] if scheme == "https" else []
    made = d.cli(
        "network", "create", "--relay", d.exchange / "relay.card.json", *cards,
        "--threshold", "3", *ca, "--out", d.exchange / "network.json",
    )  # fmt: skip
    d.fingerprint = made.stdout.split("network fingerprint: ")[1].splitlines()[0]
    d.created = made.stdout
    for party in ("relay", *CUSTODIANS, *(f"{c}-operator" for c in CUSTODIANS)):
        d.cli("join", d.exchange / "network.json", "--home", d.homes[party])
    try:
        for name in ("relay", *CUSTODIANS):
            d.start(name)
        for name in ("relay", *CUSTODIANS):
            d.wait(name)
        # People: alice joins from the relay with the fingerprint she was told, bob from the
        # file; each registers. alice protects her key with a passphrase.
        d.homes["alice"], d.homes["bob"] = root / "alice", root / "bob"
        assert d.join_from_relay(d.homes["alice"]).returncode == 0
        d.cli("join", d.exchange / "network.json", "--home", d.homes["bob"])
        d.passphrases["alice"] = secrets / "alice"
        d.passphrases["alice"].write_text("correct horse battery staple\n")
        d.cli(
            "register", "alice", "--home", d.homes["alice"],
            "--passphrase-file", d.passphrases["alice"],
        )  # fmt: skip
        d.cli("register", "bob", "--home", d.homes["bob"], "--no-passphrase")
        yield d
    finally:
        for name in list(d.services):
            d.stop(name)


def _send(d: Deployment, *options: str) -> str:
    sent = d.cli(
        "send", "--from", "alice", "--home", d.homes["alice"],
        "--passphrase-file", d.passphrases["alice"], "--quiet", *options,
    )  # fmt: skip
    return sent.stdout.strip()


def test_each_service_listens_where_its_own_home_says(deployment: Deployment) -> None:
    d = deployment
    verify = tls_context(d.trust)
    for name in ("relay", *CUSTODIANS):
        health = httpx.get(f"{d.urls[name]}/healthz", timeout=5, verify=verify).json()
        assert health["name"] == name
    served = httpx.get(f"{d.urls['relay']}/api/v1/network", timeout=5, verify=verify).content
    assert served == (d.exchange / "network.json").read_bytes()
    if d.scheme == "https":  # and nothing answers plain HTTP
        for name in ("relay", *CUSTODIANS):
            with pytest.raises(httpx.HTTPError):
                httpx.get(d.urls[name].replace("https://", "http://") + "/healthz", timeout=5)


def test_a_service_writes_nothing_outside_its_home(deployment: Deployment) -> None:
    """gunicorn 25.1 and later made a control socket in ~/.gunicorn by default, one path
    for every service of the user."""
    d = deployment
    assert _send(d, "--to", "bob", "anything written?")
    assert sorted(d.user_home.rglob("*")) == []


def test_a_message_goes_from_alice_to_bob(deployment: Deployment) -> None:
    d = deployment
    message_id = _send(d, "--to", "bob", "hello from another host")
    inbox = d.cli("inbox", "--as", "bob", "--home", d.homes["bob"]).stdout
    assert message_id in inbox and "from alice" in inbox
    read = d.cli("read", message_id, "--as", "bob", "--home", d.homes["bob"])
    assert read.stdout == "hello from another host"


def test_an_operator_approves_from_their_own_home(deployment: Deployment) -> None:
    d = deployment
    message_id = _send(d, "--to", "bob", "--require-approval", "approved by three")
    waiting = d.cli("read", message_id, "--as", "bob", "--home", d.homes["bob"], check=False)
    assert waiting.returncode == 1 and "approval" in waiting.stderr
    for custodian in ("alpha", "charlie", "echo"):
        home = d.homes[f"{custodian}-operator"]
        pending = d.cli(
            "custodian", "pending", "--name", custodian, "--home", home,
            *d.operator_key(custodian),
        ).stdout  # fmt: skip
        (release,) = [line.split()[0] for line in pending.splitlines() if message_id in line]
        d.cli(
            "custodian", "approve", release, "--name", custodian, "--home", home,
            *d.operator_key(custodian),
        )  # fmt: skip
    read = d.cli("read", message_id, "--as", "bob", "--home", d.homes["bob"])
    assert read.stdout == "approved by three"
    # An operator cannot approve for another custodian: bravo's operator key is not alpha's.
    refused = d.cli(
        "custodian", "pending", "--name", "alpha", "--home", d.homes["bravo-operator"],
        "--operator-key", d.homes["bravo-operator"] / "users" / "bravo-operator.key",
        *d.operator_key("bravo"), check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "operator" in refused.stderr


def test_a_new_person_registers_and_receives_a_message(deployment: Deployment) -> None:
    d = deployment
    carol = d.root / "carol"
    unknown = d.cli("send", "--from", "bob", "--to", "carol", "early", "--home", d.homes["bob"],
                    check=False)  # fmt: skip
    assert unknown.returncode == 1 and "securecomm register carol" in unknown.stderr
    joined = d.join_from_relay(carol, unquoted=True)  # stop 31: "unrecognized arguments"
    assert joined.returncode == 0, joined.stderr
    registered = d.cli("register", "carol", "--home", carol, "--no-passphrase").stdout
    fingerprint = registered.split("fingerprint: ")[1].splitlines()[0]
    # bob compares carol's fingerprint out of band before writing to her.
    # Another name than the home's: bob's pins were marked for alice, who asked for hers.
    for words in (["verify", "carol", fingerprint], []):
        wrong = d.cli("contacts", *words, "--as", "alice", "--home", d.homes["bob"], check=False)
        assert wrong.returncode == 2, wrong.stderr
        assert "is the home of bob, not alice's" in wrong.stderr, wrong.stderr
    assert "carol" not in d.cli("contacts", "--home", d.homes["bob"]).stdout
    d.cli("contacts", "verify", "carol", fingerprint, "--as", "bob", "--home", d.homes["bob"])
    assert "verified" in d.cli("contacts", "--home", d.homes["bob"]).stdout
    sent = d.cli("send", "--from", "bob", "--to", "carol", "welcome", "--quiet",
                 "--home", d.homes["bob"])  # fmt: skip
    read = d.cli("read", sent.stdout.strip(), "--as", "carol", "--home", carol)
    assert read.stdout == "welcome"
    # The name is hers now: someone else registering it is refused and writes nothing.
    mallory = d.root / "mallory"
    d.cli("join", d.exchange / "network.json", "--home", mallory)
    taken = d.cli("register", "carol", "--home", mallory, "--no-passphrase", check=False)
    assert taken.returncode == 2 and "taken" in taken.stderr
    assert not (mallory / "users").exists()


def test_a_tampered_network_file_served_by_the_relay_is_refused(
    deployment: Deployment,
) -> None:
    """The relay (or someone on its disk) swaps a custodian's card for one of its own
    making: validly signed, by another key. Clients compare, and refuse."""
    d = deployment
    network = Network.from_bytes((d.exchange / "network.json").read_bytes())
    impostor = Identity.generate("bravo")
    forged = Card.issue(impostor, "custodian", d.urls["bravo"], network.custodians[1].operator)
    custodians = (network.custodians[0], forged, *network.custodians[2:])
    served = d.homes["relay"] / "network.json"
    original = served.read_bytes()
    d.stop("relay")
    served.write_bytes(Network(network.relay, custodians, network.threshold).to_bytes())
    try:
        d.start("relay")
        d.wait("relay")
        newcomer = d.root / "newcomer"
        fetched = d.join_from_relay(newcomer)
        assert fetched.returncode == 1 and d.fingerprint in fetched.stderr
        assert not newcomer.exists() or not any(newcomer.iterdir())
        pins = (d.homes["alice"] / "known_keys.json").read_bytes()
        again = d.cli("join", d.urls["relay"], "--home", d.homes["alice"], check=False)
        assert again.returncode == 1
        assert network.custodians[1].identity.short_fingerprint() in again.stderr
        assert impostor.public.short_fingerprint() in again.stderr
        assert (d.homes["alice"] / "known_keys.json").read_bytes() == pins
    finally:
        d.stop("relay")
        served.write_bytes(original)
        d.start("relay")
        d.wait("relay")


def test_the_join_network_create_prints_works_as_printed(deployment: Deployment) -> None:
    """Over a private CA it lacked --tls-ca, and failed as printed (tls_refused)."""
    d = deployment
    line = d.created.split("join from the relay: ")[1].splitlines()[0]
    words = shlex.split(line)
    assert words[:2] == ["securecomm", "join"], line
    newcomer = d.root / "printed-join"
    # Run where the files handed over lie, as the CA's name is said relative to them.
    joined = subprocess.run(
        [*CLI, *words[1:], "--home", str(newcomer)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=d.exchange,
    )
    assert joined.returncode == 0, joined.stderr
    assert (newcomer / "network.json").read_bytes() == (d.exchange / "network.json").read_bytes()


def test_two_custodians_stopped_a_read_still_succeeds(deployment: Deployment) -> None:
    d = deployment
    message_id = _send(d, "--to", "bob", "three of five")
    d.stop("bravo")
    d.stop("delta")
    read = d.cli("read", message_id, "--as", "bob", "--home", d.homes["bob"], "--deadline", "5")
    assert read.stdout == "three of five"
    assert "bravo" in read.stderr and "delta" in read.stderr


def _secrets_of(d: Deployment) -> dict[str, list[bytes]]:
    """Each party's private keys, raw, read from its own home."""
    found: dict[str, list[bytes]] = {}
    for party, home in d.homes.items():
        for key_file in home.rglob("*.key"):
            if key_file.parent.name == "tls":  # the party's TLS key, the coordinator issued
                tls_key = serialization.load_pem_private_key(key_file.read_bytes(), None)
                assert isinstance(tls_key, ec.EllipticCurvePrivateKey)
                secret_value = tls_key.private_numbers().private_value.to_bytes(32, "big")
                found.setdefault(party, []).append(secret_value)
                continue
            secret = d.passphrases.get(party)
            passphrase = secret.read_text().strip().encode() if secret else None
            identity = Identity.load(key_file, passphrase)
            assert identity.name == party, f"{key_file} in {party}'s home is {identity.name}'s"
            found.setdefault(party, []).extend(
                [
                    identity._signing_key.private_bytes_raw(),
                    identity.kem_private_key.private_bytes_raw(),
                ]
            )
    return found


def _contents(home: Path) -> bytes:
    """Every byte under ``home``, and the DER inside each PEM block, decoded."""
    files = [path.read_bytes() for path in home.rglob("*") if path.is_file()]
    decoded = [
        base64.b64decode(b"".join(block.split(b"-----")[1].split()))
        for data in files
        for block in data.split(b"-----BEGIN")[1:]
        if block.split(b"-----")[0].endswith(b"PRIVATE KEY")
    ]
    return b"".join(files + decoded)


def test_no_home_holds_a_private_key_of_another_party(deployment: Deployment) -> None:
    d = deployment
    secrets = _secrets_of(d)
    assert set(secrets) >= {"relay", *CUSTODIANS, "alice", "bob"}
    assert all(f"{c}-operator" in secrets for c in CUSTODIANS)
    for party, home in d.homes.items():
        holding = {p for p in home.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()}
        assert holding == set(home.rglob("*.key")), f"a private key outside *.key in {home}"
        contents = _contents(home)
        for other, keys in secrets.items():
            if other == party:
                continue
            for key in keys:
                for spelling in (key, key.hex().encode(), base64.b64encode(key)):
                    assert spelling not in contents, f"{party}'s home holds {other}'s key"
