"""The agent (spec/sessions.md section 1), a real process on a real Unix socket: it signs and
opens as the key would, only what securecomm signs and opens, for as long as it was told,
and never hands the key out."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from securecomm import agent, hpke, httpsig
from securecomm.errors import DecryptionError
from securecomm.identity import Identity, signing_input
from tests.agents import alive, key_file, running_agent, wait_gone


@pytest.fixture
def alice(tmp_path: Path) -> tuple[Identity, Path]:
    return key_file(tmp_path, "alice")


def _socket(tmp_path: Path) -> Path:
    return agent.socket_path(tmp_path, "alice")


def test_signs_and_opens_as_the_key_does(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    identity, key_path = alice
    with running_agent(key_path, _socket(tmp_path)):
        keys = agent.find(tmp_path, "alice", identity.public)
        assert keys is not None
        assert keys.public.same_keys(identity.public)
        obj = {"message_id": "00" * 16}
        # Ed25519 is deterministic: the agent's signature is the key's, byte for byte.
        assert keys.sign("envelope", obj) == identity.sign("envelope", obj)
        headers = httpsig.sign_request(keys, method="GET", path="/api/v1/inbox", audience="relay")
        verified = httpsig.verify_request(
            method="GET",
            path="/api/v1/inbox",
            query="",
            headers=headers,
            body=b"",
            audience="relay",
            now=int(time.time()),
        )
        assert verified.identity.same_keys(identity.public)
        info = hpke.info("keep", {"message_id": "00" * 16})
        sealed = hpke.seal(b"a share", identity.public.kem_key, info)
        assert keys.unseal(sealed, info) == b"a share"
        with pytest.raises(DecryptionError):
            keys.unseal(sealed[:-1] + bytes([sealed[-1] ^ 1]), info)


def test_signs_and_opens_only_securecomm_inputs(
    tmp_path: Path, alice: tuple[Identity, Path]
) -> None:
    """The key signs two kinds of input, each with its prefix; anything else would let
    a caller get a signature a verifier takes for something else."""
    identity, key_path = alice
    with running_agent(key_path, _socket(tmp_path)):
        keys = agent.find(tmp_path, "alice", identity.public)
        assert keys is not None
        refused = [b"", b"anything", b"securecomm/v2/x", b"@method", b'x"@method"']
        # A device's delegation or revocation outlives the session: not signed for it.
        refused += [signing_input(purpose, {}) for purpose in ("delegation", "revocation")]
        refused += [signing_input("receipt", {}), b"securecomm/v1/envelopes\n{}"]
        for data in refused:
            with pytest.raises(agent.AgentError, match="signs only"):
                keys.sign_bytes(data)
        for info in (b"other/info", hpke.info("device-key", {}), hpke.info("deposit", {})):
            sealed = hpke.seal(b"x", identity.public.kem_key, info)
            with pytest.raises(agent.AgentError, match="opens only"):
                keys.unseal(sealed, info)
        assert keys.sign_bytes(signing_input("envelope", {})) == identity.sign("envelope", {})
        for purpose in ("release", "keep"):
            info = hpke.info(purpose, {"m": 1})
            assert keys.unseal(hpke.seal(b"x", identity.public.kem_key, info), info) == b"x"


def test_another_key_is_not_used(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    """A command uses an agent only for the keys of the person's public key file."""
    _, key_path = alice
    with running_agent(key_path, _socket(tmp_path)):
        assert agent.find(tmp_path, "alice", Identity.generate("alice").public) is None


def test_lock_ends_it_and_its_socket(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    identity, key_path = alice
    path = _socket(tmp_path)
    with running_agent(key_path, path) as pid:
        keys = agent.find(tmp_path, "alice", identity.public)
        assert keys is not None
        assert agent.lock(path)
        assert wait_gone(pid)
        assert not path.exists()
        with pytest.raises(agent.AgentError, match="session ended"):
            keys.sign("envelope", {})
        assert agent.find(tmp_path, "alice", identity.public) is None
        assert not agent.lock(path)


def test_its_lifetime_ends_it(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    identity, key_path = alice
    path = _socket(tmp_path)
    with running_agent(key_path, path, lifetime=1, idle=1) as pid:
        session = agent.status(path)
        assert session is not None and session.until - session.started == 1
        assert wait_gone(pid, 5.0)
        assert not path.exists()
        assert agent.find(tmp_path, "alice", identity.public) is None


def test_idle_time_ends_it_and_use_keeps_it(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    identity, key_path = alice
    path = _socket(tmp_path)
    with running_agent(key_path, path, lifetime=600, idle=2) as pid:
        keys = agent.find(tmp_path, "alice", identity.public)
        assert keys is not None
        for _ in range(3):  # used every second: 3 s in all, past one idle time
            time.sleep(1.0)
            keys.sign("envelope", {})
        assert alive(pid)
        assert wait_gone(pid, 6.0)  # then unused
        with pytest.raises(agent.AgentError, match="session ended"):
            keys.sign("envelope", {})


def test_socket_and_directory_modes(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    _, key_path = alice
    path = _socket(tmp_path)
    with running_agent(key_path, path):
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_ISSOCK(path.stat().st_mode)


def test_a_loose_directory_is_refused(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    identity, key_path = alice
    path = _socket(tmp_path)
    with running_agent(key_path, path):
        path.parent.chmod(0o755)
        with pytest.raises(agent.AgentError, match="must be 0700"):
            agent.find(tmp_path, "alice", identity.public)
        path.parent.chmod(0o700)
        assert agent.find(tmp_path, "alice", identity.public) is not None


def test_a_long_path_is_reached_through_its_directory(
    tmp_path: Path, alice: tuple[Identity, Path]
) -> None:
    """Linux takes at most 107 bytes of a socket's path; a home may be deeper."""
    identity, key_path = alice
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = agent.socket_path(deep, "alice")
    assert len(os.fsencode(path)) > 107
    with running_agent(key_path, path):
        keys = agent.find(deep, "alice", identity.public)
        assert keys is not None
        assert keys.sign("envelope", {}) == identity.sign("envelope", {})


def test_a_stale_socket_is_no_session(tmp_path: Path, alice: tuple[Identity, Path]) -> None:
    """An agent killed outright leaves its socket: nothing answers there."""
    identity, key_path = alice
    path = _socket(tmp_path)
    with running_agent(key_path, path) as pid:
        os.kill(pid, 9)
        assert wait_gone(pid)
        assert path.exists()
        assert agent.find(tmp_path, "alice", identity.public) is None
        assert agent.sessions([tmp_path]) == []


@pytest.mark.parametrize(
    ("lifetime", "idle"), [(0, 1), (agent.MAX_LIFETIME_SECONDS + 1, 1), (60, 61)]
)
def test_bounds(tmp_path: Path, lifetime: int, idle: int) -> None:
    with pytest.raises(agent.AgentError):
        agent.Agent(Identity.generate("alice"), _socket(tmp_path), lifetime=lifetime, idle=idle)


def test_the_cli_looks_for_the_socket_where_the_agent_puts_it(tmp_path: Path) -> None:
    """cli._common looks for a session without importing this module: at the same path."""
    assert agent.socket_path(tmp_path, "alice") == tmp_path / "sessions" / "alice.sock"
