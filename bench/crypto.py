"""AES-GCM and Shamir beside their peers (issue 7, benchmarks 1 and 2).

AES-GCM: securecomm.aead.seal/open against pyca's ``AESGCM`` called directly,
doing the work any correct caller must do for one message: a fresh 12-byte
``os.urandom`` nonce per call and ``AESGCM(key)`` built per call (every
message has its own key, so no cipher object outlives one message). Beside
them, ``openssl speed -evp aes-256-gcm`` as the machine's limit. MB/s means
10^6 bytes per second of plaintext.

Shamir (n = 5, t = 3): securecomm.shamir.split/combine (raw shares) against
every peer that installs here. Each peer is used the way it is meant to be:
a peer whose field holds only small secrets gets the secret in the pieces it
accepts, one call per piece (the row says how big a piece is). Combine is
always given shares 1, 3 and 5 of the 5: through shares 1, 2, 3 (or 1, 4, 5)
every Lagrange weight in GF(2^8) happens to be 1, so combine is a bare XOR
there, a best case no recipient can count on. A peer whose 1 MiB run would
take more than :data:`FULL_SIZE_LIMIT_S` is timed on a prefix of the secret
and scaled linearly to 1 MiB; its row says "extrapolated" and from what
size. For the peers that loop over pieces this is exact up to noise; for
shamir-mnemonic's mnemonic API, whose word encoding grows faster than
linearly, it flatters the peer. Every peer's output is checked once (its
combine gives the secret back) before it is timed.

The 1 MiB split figure is securecomm.shamir's big-integer path: numpy, which
split long secrets about three times as fast in a warmed process, was dropped
because a fresh `securecomm split` pays more to import it than it saves. And
the figures are those
of a process that has already freed big buffers, as this one has once the
AES rows ran: glibc then keeps freed memory for reuse. A process that has
not pays a page fault for every fresh 4 KiB a call writes (about 1,600 per
1 MiB split, some 2.3 us each on this machine), which halves that figure.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench._common import Row, alternate, repeat_for
from securecomm import aead, shamir

N_SHARES = 5
THRESHOLD = 3
KiB = 1024
MiB = 1024 * KiB

#: A peer whose run on the full secret would take longer than this is timed
#: on a prefix and scaled (issue 7 says ~20 s; 3 s leaves time for enough
#: rounds within `make bench`'s 10 minutes, and scaling a loop over pieces is
#: exact).
FULL_SIZE_LIMIT_S = 3.0
#: How long one timed call of such a prefix should take, at most.
SAMPLE_TARGET_S = FULL_SIZE_LIMIT_S / 5

AES_SIZES = [
    ("64 B", 64),
    ("1 KiB", KiB),
    ("64 KiB", 64 * KiB),
    ("1 MiB", MiB),
    ("16 MiB", 16 * MiB),
]
AES_GOAL_FROM = KiB
SHAMIR_SIZES = [("32 B", 32), ("1 MiB", MiB)]


def _label(size: int) -> str:
    for unit, name in ((MiB, "MiB"), (KiB, "KiB")):
        if size >= unit:
            return f"{size / unit:.4g} {name}"
    return f"{size} B"


def _times(function: Callable[[], object], count: int) -> Callable[[], None]:
    def many() -> None:
        for _ in range(count):
            function()

    return many


def _compare(
    ours: Callable[[], object],
    peer: Callable[[], object],
    *,
    rounds: int,
    budget: float,
) -> tuple[float, float]:
    """Median seconds per call of each, alternating; each side batched to about ``budget``."""
    ours_count = repeat_for(ours, budget)
    peer_count = repeat_for(peer, budget)
    mine, theirs = alternate(_times(ours, ours_count), _times(peer, peer_count), rounds=rounds)
    return mine / ours_count, theirs / peer_count


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --- AES-GCM -------------------------------------------------------------------------------------


def _bare_seal(key: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    # What a correct caller of pyca must do per message: fresh nonce, cipher for this key.
    nonce = os.urandom(12)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, b"")


def _bare_open(key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    return AESGCM(key).decrypt(nonce, sealed, b"")


_OPENSSL_FIGURE = re.compile(r"^\+F:\d+:AES-256-GCM:([0-9.]+)\s*$", re.MULTILINE)


def _openssl_version() -> str:
    done = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False)
    return " ".join(done.stdout.split()[:2]) or "OpenSSL"


def openssl_speed(size: int, seconds: int = 1) -> float:
    """``openssl speed -evp aes-256-gcm`` for one buffer size, in MB/s of wall-clock time."""
    done = subprocess.run(
        ["openssl", "speed", "-elapsed", "-mr", "-evp", "aes-256-gcm",
         "-seconds", str(seconds), "-bytes", str(size)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = _OPENSSL_FIGURE.findall(done.stdout + done.stderr)
    if not found:
        raise RuntimeError(f"openssl speed: no figure in its output:\n{done.stdout}")
    return float(found[-1]) / 1e6


def aes_rows(quick: bool = False) -> list[Row]:
    """Seal and open beside bare pyca at each size; seal beside `openssl speed` too.

    Seal is timed in blocks of rounds with one `openssl speed` run after each
    block, so ours, bare pyca and OpenSSL alternate in one run; the figures
    are the medians of the blocks' medians.
    """
    rows: list[Row] = []
    openssl_rows: list[Row] = []
    sizes = AES_SIZES[:2] if quick else AES_SIZES
    blocks, rounds, budget = (1, 1, 0.002) if quick else (3, 7, 0.02)
    key = aead.generate_key()
    peer_name = "pyca AESGCM direct (fresh nonce + AESGCM(key) per call)"
    openssl = shutil.which("openssl") is not None
    version = _openssl_version() if openssl else ""
    # Warm up first: the first rounds of a process run slow (imports, caches, clocks).
    warm = os.urandom(KiB)
    warm_until = time.perf_counter() + (0.01 if quick else 0.3)
    while time.perf_counter() < warm_until:
        aead.open(key, *aead.seal(key, warm))
        _bare_open(key, *_bare_seal(key, warm))
    for index, (label, size) in enumerate(sizes):
        message = os.urandom(size)
        nonce, sealed = aead.seal(key, message)
        assert aead.open(key, nonce, sealed) == message == _bare_open(key, nonce, sealed)
        with_goal = size >= AES_GOAL_FROM
        # In a quick run OpenSSL (a second a run) is asked about the first size only.
        with_openssl = openssl and (index == 0 or not quick)
        pairs: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("seal", partial(aead.seal, key, message), partial(_bare_seal, key, message)),
            (
                "open",
                partial(aead.open, key, nonce, sealed),
                partial(_bare_open, key, nonce, sealed),
            ),
        ]
        for operation, ours, peer in pairs:
            mine: list[float] = []
            theirs: list[float] = []
            machine: list[float] = []
            for _ in range(blocks):
                block_mine, block_theirs = _compare(ours, peer, rounds=rounds, budget=budget)
                mine.append(block_mine)
                theirs.append(block_theirs)
                if operation == "seal" and with_openssl:
                    machine.append(openssl_speed(size))
            ours_mb = size / statistics.median(mine) / 1e6
            peer_mb = size / statistics.median(theirs) / 1e6
            rows.append(
                Row(
                    group="AES-GCM",
                    figure=f"{operation} {label}",
                    unit="MB/s",
                    ours=ours_mb,
                    peer=peer_mb,
                    peer_name=peer_name,
                    goal=">= 95 % of bare AESGCM" if with_goal else "none (per-call cost rules)",
                    met=(ours_mb >= 0.95 * peer_mb) if with_goal else None,
                )
            )
            if machine:
                openssl_rows.append(
                    Row(
                        group="AES-GCM",
                        figure=f"seal {label}",
                        unit="MB/s",
                        ours=ours_mb,
                        peer=statistics.median(machine),
                        peer_name="OpenSSL (machine limit)",
                        goal=f"report only (`openssl speed -elapsed`, {version}: bulk encryption,"
                        " no key setup or nonce per buffer)",
                        met=None,
                    )
                )
    return rows + openssl_rows


# --- Shamir --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A Shamir implementation to compare with, and how it is driven.

    ``split`` takes one piece (at most ``piece`` bytes, or the whole secret
    when ``piece`` is None) and returns its shares in the peer's own form;
    ``combine`` takes what ``split`` returned and rebuilds the piece from
    shares 1, 3 and 5 (see :func:`pick`). A split-only peer has no
    ``combine`` but a ``check`` that rebuilds a piece some other way, to show
    its shares are right.
    """

    name: str
    piece: int | None
    split: Callable[[bytes], Any]
    combine: Callable[[Any], bytes] | None
    check: Callable[[Any], bytes] | None = None

    def rebuild(self, shares: Sequence[Any]) -> bytes:
        rebuild = self.combine or self.check
        assert rebuild is not None
        return b"".join(rebuild(one) for one in shares)

    def pieces(self, secret: bytes) -> list[bytes]:
        if self.piece is None:
            return [secret]
        return [secret[i : i + self.piece] for i in range(0, len(secret), self.piece)]

    def split_all(self, pieces: Sequence[bytes]) -> Callable[[], list[Any]]:
        split = self.split
        return lambda: [split(piece) for piece in pieces]

    def combine_all(self, shares: Sequence[Any]) -> Callable[[], list[bytes]]:
        combine = self.combine
        assert combine is not None
        return lambda: [combine(one) for one in shares]


#: Primes for the peers that work modulo a prime of the caller's choice.
#: 2^256 + 297 is the smallest prime above 2^256 (sslib's list names it):
#: the smallest field a 32-byte key fits in, and the fastest round trip for
#: these peers among the sizes tried (32, 65, 152, 275, 531, 2,488 bytes a piece).
P256 = 2**256 + 297
P256_NAME = "p = 2^256+297, 32-byte pieces"
#: shamirs splits fastest with pieces of kilobytes: 77 MB/s at p = 2^110503-1
#: (13,812-byte pieces), the best of the Mersenne primes from 2^4253-1 to
#: 2^216091-1. But its combine then crawls (29 s for one 2,492-byte piece at
#: 2^19937-1, so hours for 1 MiB), so no one could use those shares: the row
#: is shown beside the others but is not the yardstick for the 3x goal.
P110503 = 2**110503 - 1
#: The shares combine is given: x = 1, 3, 5 (indices into the 5).
PICKED = (0, 2, 4)


def pick(shares: Sequence[Any]) -> list[Any]:
    return [shares[i] for i in PICKED]


def _prime_field_peers() -> list[Peer]:
    peers = []
    try:
        pysss: Any = importlib.import_module("pysss")
    except ImportError:
        pass
    else:

        def pysss_split(piece: bytes) -> tuple[int, list[tuple[int, int]]]:
            return len(piece), pysss.split_secret(
                int.from_bytes(piece, "big"), N_SHARES, THRESHOLD, P256
            )

        def pysss_combine(split: tuple[int, list[tuple[int, int]]]) -> bytes:
            length, shares = split
            value: int = pysss.reconstruct_secret(pick(shares), P256)
            return value.to_bytes(length, "big")

        peers.append(
            Peer(f"pysss {_version('pysss')} ({P256_NAME})", 32, pysss_split, pysss_combine)
        )
    try:
        shamirs: Any = importlib.import_module("shamirs")
    except ImportError:
        pass
    else:

        def shamirs_splitter(prime: int) -> Callable[[bytes], tuple[int, list[Any]]]:
            def split(piece: bytes) -> tuple[int, list[Any]]:
                value = int.from_bytes(piece, "big")
                return len(piece), shamirs.shares(
                    value, N_SHARES, modulus=prime, threshold=THRESHOLD
                )

            return split

        def shamirs_combine(split: tuple[int, list[Any]]) -> bytes:
            length, shares = split
            value: int = shamirs.interpolate(pick(shares), threshold=THRESHOLD)
            return value.to_bytes(length, "big")

        def shamirs_check(split: tuple[int, list[Any]]) -> bytes:
            # Lagrange at 0 through x = 1, 3, 5 is (15·y1 - 10·y3 + 3·y5) / 8 (its own
            # combine takes hours at this size).
            length, shares = split
            y1, y3, y5 = (share.value for share in pick(shares))
            value: int = (15 * y1 - 10 * y3 + 3 * y5) * pow(8, -1, P110503) % P110503
            return value.to_bytes(length, "big")

        name = f"shamirs {_version('shamirs')}"
        peers.append(Peer(f"{name} ({P256_NAME})", 32, shamirs_splitter(P256), shamirs_combine))
        peers.append(
            Peer(
                f"{name} split-tuned (p = 2^110503-1, 13,812-byte pieces): split only,"
                " as its combine then takes hours (3.4 h per MiB at p = 2^19937-1)",
                (110503 - 1) // 8,
                shamirs_splitter(P110503),
                None,
                shamirs_check,
            )
        )
    try:
        sslib: Any = importlib.import_module("sslib.shamir")
    except ImportError:
        pass
    else:

        def sslib_split(piece: bytes) -> Any:
            return sslib.split_secret(piece, THRESHOLD, N_SHARES)

        def sslib_combine(split: Any) -> bytes:
            picked = {**split, "shares": pick(split["shares"])}
            result: bytes = sslib.recover_secret(picked)
            return result

        # sslib picks its prime from the piece length; 2,487 bytes (p = 2^19937-1) gave its
        # fastest round trip among 31, 64, 151, 274, 530, 2,487 and 27,010 bytes.
        peers.append(
            Peer(
                f"sslib {_version('sslib')} (2,487-byte pieces, its p = 2^19937-1)",
                2487,
                sslib_split,
                sslib_combine,
            )
        )
    return peers


def _peers() -> list[Peer]:
    peers: list[Peer] = []
    try:
        cryptodome: Any = importlib.import_module("Crypto.Protocol.SecretSharing")
    except ImportError:
        pass
    else:
        shamir_16 = cryptodome.Shamir

        def cryptodome_split(piece: bytes) -> Any:
            return shamir_16.split(THRESHOLD, N_SHARES, piece)

        def cryptodome_combine(shares: Any) -> bytes:
            result: bytes = shamir_16.combine(pick(shares))
            return result

        peers.append(
            Peer(
                f"pycryptodome {_version('pycryptodome')} Shamir (16-byte pieces)",
                16,
                cryptodome_split,
                cryptodome_combine,
            )
        )
    try:
        slip39: Any = importlib.import_module("shamir_mnemonic")
        slip39_raw: Any = importlib.import_module("shamir_mnemonic.shamir")
    except ImportError:
        pass
    else:
        version = _version("shamir-mnemonic")

        def raw_split(secret: bytes) -> Any:
            return slip39_raw._split_secret(THRESHOLD, N_SHARES, secret)

        def raw_combine(shares: Any) -> bytes:
            result: bytes = slip39_raw._recover_secret(THRESHOLD, pick(shares))
            return result

        def mnemonic_split(secret: bytes) -> Any:
            return slip39.generate_mnemonics(
                1, [(THRESHOLD, N_SHARES)], secret, iteration_exponent=0
            )

        def mnemonic_combine(groups: Any) -> bytes:
            result: bytes = slip39.combine_mnemonics(pick(groups[0]))
            return result

        peers.append(
            Peer(f"shamir-mnemonic {version} raw _split_secret/_recover_secret", None,
                 raw_split, raw_combine)
        )  # fmt: skip
        peers.append(
            Peer(
                f"shamir-mnemonic {version} mnemonics (SLIP-39 words, its lowest KDF cost e=0)",
                None,
                mnemonic_split,
                mnemonic_combine,
            )
        )
    peers += _prime_field_peers()
    if shutil.which("ssss-split") and shutil.which("ssss-combine"):
        peers.append(Peer("Debian ssss 0.5 (a process each; 128-byte pieces)", 128,
                          _ssss_split, _ssss_combine))  # fmt: skip
    return peers


def _ssss_split(piece: bytes) -> tuple[int, list[str]]:
    done = subprocess.run(
        ["ssss-split", "-t", str(THRESHOLD), "-n", str(N_SHARES), "-x", "-q",
         "-s", str(8 * len(piece))],
        input=piece.hex() + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    return len(piece), done.stdout.split()


def _ssss_combine(split: tuple[int, list[str]]) -> bytes:
    length, shares = split
    done = subprocess.run(
        ["ssss-combine", "-t", str(THRESHOLD), "-x", "-q"],
        input="\n".join(pick(shares)) + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    # ssss-combine writes the secret to standard error.
    return bytes.fromhex(done.stderr.strip().split()[-1].zfill(2 * length))


def _seconds(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _sample_size(peer: Peer, full: int, seconds_per_byte: float, limit: float) -> int:
    """All of ``full`` if the peer gets through it within ``limit``, else a prefix to scale."""
    if seconds_per_byte * full <= limit:
        return full
    unit = peer.piece or 32  # a whole-secret peer: shamir-mnemonic wants >= 16 bytes, even
    size = unit
    while (
        size * 2 <= full
        and size * 2 * seconds_per_byte <= limit * SAMPLE_TARGET_S / FULL_SIZE_LIMIT_S
    ):
        size *= 2
    return size


def _extrapolated(size: int, full: int) -> str:
    if size == full:
        return ""
    return f"; extrapolated x{full / size:.4g} from {_label(size)}"


def shamir_rows(quick: bool = False) -> list[Row]:
    sizes = [("32 B", 32), ("1 KiB", KiB)] if quick else SHAMIR_SIZES
    limit = 0.02 if quick else FULL_SIZE_LIMIT_S
    rows: list[Row] = []
    peers = _peers()
    for label, size in sizes:
        small = size <= 64
        rounds = 1 if quick else (15 if small else 5)
        budget = 0.002 if quick else 0.02
        secret = os.urandom(size)
        ours_shares = shamir.split(secret, N_SHARES, THRESHOLD)
        basis = pick(ours_shares)
        assert shamir.combine(basis) == secret

        def ours_split(secret: bytes = secret) -> object:
            return shamir.split(secret, N_SHARES, THRESHOLD)

        def ours_combine(basis: list[bytes] = basis) -> object:
            return shamir.combine(basis)

        found: dict[str, list[tuple[Peer, float, float, str]]] = {"split": [], "combine": []}
        for peer in peers:
            if small and peer.combine is None:
                continue  # a split-tuned variant: at 32 bytes it is its plain row
            # One probe on a small prefix says whether the whole secret fits the time limit.
            probe = peer.pieces(secret[: min(size, 256 if quick else KiB)])
            probe_bytes = sum(map(len, probe))
            probe_shares = peer.split_all(probe)()
            per_byte = {"split": _seconds(peer.split_all(probe)) / probe_bytes}
            if peer.combine is not None:
                per_byte["combine"] = _seconds(peer.combine_all(probe_shares)) / probe_bytes
            for operation, seconds_per_byte in per_byte.items():
                sample_size = _sample_size(peer, size, seconds_per_byte, limit)
                pieces = peer.pieces(secret[:sample_size])
                shares = peer.split_all(pieces)()
                if peer.rebuild(shares) != secret[:sample_size]:
                    raise AssertionError(f"{peer.name}: its shares do not give the secret back")
                if operation == "split":
                    mine, theirs = _compare(
                        ours_split, peer.split_all(pieces), rounds=rounds, budget=budget
                    )
                else:
                    mine, theirs = _compare(
                        ours_combine, peer.combine_all(shares), rounds=rounds, budget=budget
                    )
                note = _extrapolated(sample_size, size)
                found[operation].append((peer, mine, theirs * size / sample_size, note))
        for operation, results in found.items():
            rows += _shamir_peer_rows(operation, label, size, results)
        if not small:
            rows += _split_alone_rows(secret, label, rounds=rounds, budget=budget)
    return rows


def _shamir_peer_rows(
    operation: str, label: str, size: int, results: Sequence[tuple[Peer, float, float, str]]
) -> list[Row]:
    """One row per peer; the goal (3x) is marked on the fastest peer's row."""
    if not results:
        return []
    small = size <= 64
    # A split-only configuration (no usable combine) is shown but is no one's yardstick.
    usable = [result for result in results if result[0].combine is not None]
    fastest = min(usable or results, key=lambda result: result[2])[0]
    rows = []
    for peer, mine, theirs, note in results:
        ours, peers = (1 / mine, 1 / theirs) if small else (size / mine / 1e6, size / theirs / 1e6)
        is_fastest = peer is fastest
        rows.append(
            Row(
                group="Shamir",
                figure=f"{operation} {label}",
                unit="ops/s" if small else "MB/s",
                ours=ours,
                peer=peers,
                peer_name=peer.name + note,
                goal=">= 3x the fastest peer (this one)"
                if is_fastest
                else "none (split only, unusable)"
                if peer.combine is None
                else "(not the fastest)",
                met=ours >= 3 * peers if is_fastest else None,
            )
        )
    return rows


# Run in a process of its own: a split of 1 MiB in a process that earlier rows warmed (glibc
# keeps the big buffers they freed) is up to three times faster than in a user's process.
_FRESH_SPLIT = """
import os, statistics, sys, time
from securecomm import shamir
size, n, t, rounds = (int(a) for a in sys.argv[1:5])
secret = os.urandom(size)
ours, floor = [], []
for number in range(rounds):
    pair = [(lambda: shamir.split(secret, n, t), ours),
            (lambda: [os.urandom(size) for _ in range(t - 1)], floor)]
    for call, sink in (pair if number % 2 == 0 else pair[::-1]):
        started = time.perf_counter()
        call()
        sink.append(time.perf_counter() - started)
print(statistics.median(ours), statistics.median(floor))
"""


def _split_alone_rows(secret: bytes, label: str, *, rounds: int, budget: float) -> list[Row]:
    """Our split of a large secret in a fresh process, beside its floor there: drawing
    (t-1)·L random bytes. A report: its 200 MB/s goal is retired (issue 16), as a key is
    32 bytes and nobody splits a large file directly."""
    size = len(secret)
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_SPLIT, str(size), str(N_SHARES), str(THRESHOLD),
         str(max(rounds, 5))],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    mine, randomness = (float(x) for x in done.stdout.split())
    ours_mb, floor_mb = size / mine / 1e6, size / randomness / 1e6
    return [
        Row(
            group="Shamir",
            figure=f"split {label}, in a fresh process (the first calls included)",
            unit="MB/s",
            ours=ours_mb,
            peer=floor_mb,
            peer_name=f"os.urandom of {THRESHOLD - 1} x {label} alone (the coefficients)",
            goal="report only (split can be no faster than its floor; the 200 MB/s goal"
            " is retired)",
            met=None,
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    """Every AES-GCM and Shamir row; ``quick``: tiny sizes, one round (a smoke run)."""
    return aes_rows(quick) + shamir_rows(quick)
