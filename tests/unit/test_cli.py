"""The ``securecomm`` command: in-process through ``main()``, and a few real processes.

Every failing case is checked for its exit code, an empty standard output, a
one-line error with no traceback, and for the absence of the secret or
plaintext (and of any share) in what it prints.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import securecomm
from securecomm import canonical
from securecomm.cli import main
from securecomm.identity import Identity
from securecomm.shares import TEXT_PREFIX, Share

SECRET = b"secret"
# Distinctive enough that no error message can contain it by chance.
CANARY = b"Zq9-launch-code-7731"
PLAINTEXT = b"Rendezvous-7Qx at the old mill, 05:40.\n\x00\xfe\xff tail"
PLAINTEXT_MARKER = "Rendezvous-7Qx"
DEMO_MESSAGE = "Meet at the north gate at 06:00."

THREE_OF_FIVE = list(itertools.combinations(range(5), 3))
FOUR_OR_FIVE_OF_FIVE = [
    *itertools.combinations(range(5), 4),
    tuple(range(5)),
]

FAST = settings(max_examples=60, deadline=None, database=None)


# Running the command


@dataclass(frozen=True)
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")


def run_cli(*argv: object, stdin: bytes = b"") -> Result:
    """Run ``securecomm.cli.main`` in this process with byte-exact standard streams.

    Only ``SystemExit`` is caught: any other exception escaping ``main`` fails the test.
    """
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
    # write_through keeps print() and writes to .buffer in the order they happen.
    sys.stdout = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(err_bytes, encoding="utf-8", write_through=True)
    code = 0
    try:
        main([str(arg) for arg in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = out_bytes.getvalue(), err_bytes.getvalue()
        sys.stdin, sys.stdout, sys.stderr = saved
    return Result(code, out, err.decode("utf-8"))


def run_process(
    *argv: object, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "securecomm.cli", *(str(arg) for arg in argv)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def assert_refused(
    result: Result,
    code: int,
    *phrases: str,
    secrets: Iterable[bytes | str] = (),
) -> None:
    """A refusal: exit ``code``, nothing on stdout, a one-line error naming ``phrases``.

    Notes may come before the error line; only a hint may follow it.
    """
    assert result.code == code, result.err
    assert result.out == b""
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    # "securecomm: error: ", or "securecomm send: error: " from the command's own parser.
    errors = [i for i, line in enumerate(lines) if re.match(r"securecomm( [a-z]+)*: error: ", line)]
    assert len(errors) == 1, result.err
    after = lines[errors[0] + 1 :]
    assert after == [] or (len(after) == 1 and after[0].startswith("hint: ")), result.err
    for phrase in phrases:
        assert phrase in result.err
    for secret in secrets:
        text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
        assert text not in result.err
        if isinstance(secret, bytes):
            assert base64.b64encode(secret).decode() not in result.err
            assert secret.hex() not in result.err


def assert_usage_error(result: Result) -> None:
    assert result.code == 2
    assert result.out == b""
    assert result.err.startswith("usage: securecomm")
    assert "error:" in result.err
    assert "Traceback" not in result.err


def share_lines(result: Result) -> list[str]:
    assert result.code == 0, result.err
    return result.text.splitlines()


def body(share_text: str) -> str:
    return share_text[len(TEXT_PREFIX) :]


def change_char(text: str, position: int) -> str:
    replacement = "A" if text[position] != "A" else "B"
    return text[:position] + replacement + text[position + 1 :]


def split(secret: bytes, n: int = 5, t: int = 3) -> list[str]:
    return share_lines(run_cli("split", "-n", n, "-t", t, stdin=secret))


@pytest.fixture(scope="module")
def secret_shares() -> list[str]:
    return split(SECRET)


@pytest.fixture(scope="module")
def canary_shares() -> list[str]:
    return split(CANARY)


# split


def test_split_prints_five_prefixed_lines(secret_shares: list[str]) -> None:
    result = run_cli("split", "-n", 5, "-t", 3, stdin=SECRET)
    assert result.code == 0
    assert result.err == ""
    assert result.out.endswith(b"\n")
    lines = result.text.splitlines()
    assert len(lines) == 5
    assert all(line.startswith("securecomm-share-v1:") for line in lines)
    parsed = [Share.from_text(line) for line in lines]
    assert [share.index for share in parsed] == [1, 2, 3, 4, 5]
    assert {share.threshold for share in parsed} == {3}
    assert len({share.split_id for share in parsed}) == 1
    # A fresh split each time: the module fixture's shares are not these.
    assert set(lines).isdisjoint(secret_shares)
    assert "secret" not in result.text


def test_split_defaults_are_three_of_five() -> None:
    lines = share_lines(run_cli("split", stdin=SECRET))
    assert len(lines) == 5
    assert {Share.from_text(line).threshold for line in lines} == {3}


def test_split_reads_file_and_keeps_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_bytes(b"secret\n")
    lines = share_lines(run_cli("split", "--file", path))
    result = run_cli("combine", *lines[:3])
    assert result.code == 0
    assert result.out == b"secret\n"


# combine


@pytest.mark.parametrize("chosen", THREE_OF_FIVE)
def test_combine_any_three_via_stdin(secret_shares: list[str], chosen: tuple[int, ...]) -> None:
    stdin = "".join(secret_shares[i] + "\n" for i in chosen).encode()
    result = run_cli("combine", stdin=stdin)
    assert result.code == 0, result.err
    assert result.out == b"secret"
    assert result.err == ""


@pytest.mark.parametrize("chosen", THREE_OF_FIVE)
def test_combine_any_three_via_arguments(secret_shares: list[str], chosen: tuple[int, ...]) -> None:
    result = run_cli("combine", *(secret_shares[i] for i in reversed(chosen)))
    assert result.code == 0, result.err
    assert result.out == b"secret"
    assert result.err == ""


@pytest.mark.parametrize("chosen", FOUR_OR_FIVE_OF_FIVE)
def test_combine_four_or_five_shares(secret_shares: list[str], chosen: tuple[int, ...]) -> None:
    by_argument = run_cli("combine", *(secret_shares[i] for i in chosen))
    by_stdin = run_cli("combine", stdin="\n".join(secret_shares[i] for i in chosen).encode())
    assert (by_argument.code, by_argument.out) == (0, b"secret")
    assert (by_stdin.code, by_stdin.out) == (0, b"secret")


def test_combine_tolerates_crlf_blank_lines_and_spaces(secret_shares: list[str]) -> None:
    stdin = f"\r\n  {secret_shares[4]}  \r\n\r\n{secret_shares[0]}\r\n\t{secret_shares[2]}".encode()
    result = run_cli("combine", stdin=stdin)
    assert (result.code, result.out) == (0, b"secret")


def test_combine_file_to_out(tmp_path: Path, secret_shares: list[str]) -> None:
    shares_file = tmp_path / "shares.txt"
    shares_file.write_text("\n".join(secret_shares[1:4]) + "\n")
    out = tmp_path / "recovered.bin"
    result = run_cli("combine", "--file", shares_file, "--out", out)
    assert result.code == 0, result.err
    assert result.out == b""
    assert out.read_bytes() == b"secret"


def test_combine_failure_does_not_create_out(tmp_path: Path, canary_shares: list[str]) -> None:
    out = tmp_path / "recovered.bin"
    result = run_cli("combine", "--out", out, *canary_shares[:2])
    assert_refused(result, 2, "threshold is 3", secrets=[CANARY])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@FAST
@given(
    secret=st.binary(min_size=1, max_size=48),
    n=st.integers(min_value=2, max_value=9),
    data=st.data(),
)
def test_split_combine_round_trip_any_subset(secret: bytes, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(min_value=2, max_value=n), label="t")
    lines = split(secret, n, t)
    assert len(lines) == n
    count = data.draw(st.integers(min_value=t, max_value=n), label="count")
    chosen = data.draw(st.permutations(lines), label="order")[:count]
    result = run_cli("combine", *chosen)
    assert result.code == 0, result.err
    assert result.out == secret


# combine: damaged shares


# Inside the prefix, on the version, on the colon, and across the base64 body.
CHANGED_POSITIONS = [0, 3, 11, 17, 18, 19, 20, 21, 24, 30, 38, 45, 52, 60, -2, -1]


@pytest.mark.parametrize("position", CHANGED_POSITIONS)
@pytest.mark.parametrize("via", ["arguments", "stdin"])
def test_combine_names_a_share_with_one_character_changed(
    canary_shares: list[str], position: int, via: str
) -> None:
    damaged = change_char(canary_shares[1], position % len(canary_shares[1]))
    given_shares = [canary_shares[0], damaged, canary_shares[2], canary_shares[3]]
    if via == "arguments":
        result = run_cli("combine", *given_shares)
    else:
        result = run_cli("combine", stdin="\n".join(given_shares).encode())
    assert_refused(
        result,
        2,
        "share 2",
        secrets=[CANARY, damaged, *(body(s) for s in canary_shares)],
    )


REPLACEMENTS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_:. é"
)


@FAST
@given(
    secret=st.binary(min_size=1, max_size=40),
    data=st.data(),
    via_stdin=st.booleans(),
)
def test_combine_refuses_every_single_character_change(
    secret: bytes, data: st.DataObject, via_stdin: bool
) -> None:
    lines = split(secret)
    target = lines[1]
    position = data.draw(st.integers(min_value=0, max_value=len(target) - 1), label="position")
    replacement = data.draw(REPLACEMENTS.filter(lambda c: c != target[position]), label="char")
    damaged = target[:position] + replacement + target[position + 1 :]
    given_shares = [lines[0], damaged, lines[2]]
    if via_stdin:
        result = run_cli("combine", stdin="\n".join(given_shares).encode())
    else:
        result = run_cli("combine", *given_shares)
    assert_refused(result, 2, "share 2", secrets=[body(s) for s in lines])
    assert result.out == b""


@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_share_damaged_into_a_leading_dash_is_named_not_quoted(
    canary_shares: list[str], where: int
) -> None:
    # argparse took "-ecurecomm-share-v1:..." for an unknown option and quoted it whole.
    given_shares = list(canary_shares[:3])
    damaged = "-" + given_shares[where][1:]
    given_shares[where] = damaged
    result = run_cli("combine", *given_shares)
    assert_refused(
        result,
        2,
        f"share {where + 1}",
        secrets=[CANARY, damaged[1:], *(body(s) for s in canary_shares)],
    )


def test_an_output_in_a_directory_that_is_not_there_is_refused(
    canary_shares: list[str], tmp_path: Path
) -> None:
    """`combine --out missing/secret` made the directory: a typo in a path then left the
    secret where nobody looks. It is refused, as cp refuses it, and nothing is made."""
    for out in (tmp_path / "missing" / "secret", f"{tmp_path / 'new'}/"):
        result = run_cli("combine", "--out", out, *canary_shares[:3])
        assert_refused(result, 1, "is not a directory", secrets=[CANARY])
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_not_a_file_is_refused_even_with_force(
    canary_shares: list[str], tmp_path: Path
) -> None:
    """`--out fifo --force` replaced the pipe with a file (as root, `--out /dev/null
    --force` replaced /dev/null); `encrypt -o DIR --force` failed on the directory after it
    had written the shares. Both are refused before any work, and nothing is changed."""
    pipe, directory, shares = tmp_path / "pipe", tmp_path / "dir", tmp_path / "shares"
    os.mkfifo(pipe)
    directory.mkdir()
    shares.mkdir()
    for force in ((), ("--force",)):
        result = run_cli("combine", "--out", pipe, *force, *canary_shares[:3])
        assert_refused(result, 1, "is not a file", secrets=[CANARY])
        result = run_cli("combine", "--out", directory, *force, *canary_shares[:3])
        assert_refused(result, 1, "is a directory", secrets=[CANARY])
        (tmp_path / "m.txt").write_bytes(CANARY)
        for out in (pipe, directory):
            result = run_cli(
                "encrypt", tmp_path / "m.txt", "--shares-out", shares, "-o", out, *force
            )
            assert result.code == 1 and result.out == b"", result.err
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    assert list(directory.iterdir()) == [] and list(shares.iterdir()) == []


def test_a_file_of_shares_named_as_a_share_is_said_to_be_a_file(
    canary_shares: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`combine shares.txt` said "share 1: does not start with 'securecomm-share-v1:'", as if
    the file's name were a damaged share. The word is named as a file, with the way to give
    its shares; a damaged share among the words is still never quoted."""
    monkeypatch.chdir(tmp_path)
    Path("shares.txt").write_text("\n".join(canary_shares[:3]) + "\n")
    Path("more shares.txt").write_text(canary_shares[3] + "\n")
    damaged = "Q" + canary_shares[4][1:]
    result = run_cli("combine", canary_shares[0], damaged, "shares.txt", "more shares.txt")
    assert_refused(
        result,
        2,
        "share 3 is the name of a file (shares.txt), not a share",
        "cat shares.txt 'more shares.txt' | securecomm combine",
        secrets=[CANARY, damaged, *(body(s) for s in canary_shares)],
    )
    piped = run_cli("combine", stdin=Path("shares.txt").read_bytes())
    assert (piped.code, piped.out) == (0, CANARY), piped.err
    # A word that names no file is a share as before, whatever it looks like.
    missing = run_cli("combine", "missing.txt", *canary_shares[:2])
    assert_refused(missing, 2, "share 1: does not start with", secrets=[CANARY])


def test_combine_takes_shares_beginning_with_a_dash_in_their_places(
    canary_shares: list[str], tmp_path: Path
) -> None:
    # The dashed word keeps its place among the shares (so its number is right), and
    # shares after an option join the others (argparse quoted them as arguments too many).
    out = tmp_path / "secret"
    shares = [canary_shares[0], "-" + canary_shares[1][1:], canary_shares[2]]
    result = run_cli("combine", "--out", out, shares[0], shares[1], "--force", shares[2])
    assert_refused(result, 2, "share 2", secrets=[CANARY, *(body(s) for s in canary_shares)])
    assert not out.exists()
    after_dashes = run_cli("combine", "--", *canary_shares[:3])
    assert after_dashes.code == 0, after_dashes.err
    assert after_dashes.out == CANARY


def test_a_word_beginning_with_a_dash_is_a_value_where_one_is_due() -> None:
    from securecomm.cli import _parse

    args = _parse(["send", "-hello, bob", "--from", "alice", "--to", "-bob-", "--to", "eve"])
    assert (args.text, args.sender, args.to) == ("-hello, bob", "alice", ["-bob-", "eve"])


def test_a_dashed_value_of_an_option_is_named_as_typed_and_the_message_never() -> None:
    """`send --expires -1d` said "'(word 6)' is not a duration": the stand-in that hides a
    dashed message word was shown for the option's own value."""
    result = run_cli("send", "--from", "alice", "--to", "bob", "--expires", "-1d", "-hush")
    assert_refused(result, 2, "argument --expires: '-1d' is not a duration", secrets=["hush"])
    assert "(word" not in result.err
    result = run_cli("send", "--deadline", "-5", "--from", "alice", "-hush", "--to", "bob")
    assert_refused(result, 2, "argument --deadline: '-5'", secrets=["hush"])


def test_an_expiry_past_what_an_envelope_holds_is_refused_as_typed() -> None:
    """`send --expires 100000000w` said "policy.expires: 60481796524669 is outside
    0..1099511627776": a field and a number the user never typed, after the key was read."""
    for typed in ("100000000w", "99999999999999999999w"):
        result = run_cli("send", "--from", "alice", "--to", "bob", "hush", "--expires", typed)
        assert_refused(
            result,
            2,
            f"argument --expires: '{typed}' ends after the year 36812, the last an envelope"
            " holds; leave --expires out for a message that does not expire",
            secrets=["hush"],
        )
        assert "policy" not in result.err


def test_contacts_options_before_its_verb_are_kept_and_list_lists() -> None:
    """`contacts --as alice --home H verify bob FP` lost --as and --home: the verb's own
    defaults replaced them, and the command looked for ./securecomm-data."""
    from securecomm.cli import _parse
    from securecomm.cli.contacts import cmd_contacts, cmd_contacts_verify

    before = _parse(["contacts", "--as", "alice", "--home", "H", "verify", "bob", "12", "34"])
    assert (before.func, before.person, before.home) == (cmd_contacts_verify, "alice", "H")
    assert before.fingerprint == ["12", "34"]
    after = _parse(["contacts", "verify", "bob", "12", "--as", "carol", "--home", "G"])
    assert (after.person, after.home) == ("carol", "G")
    for argv in (
        ["contacts", "--as", "alice", "--all", "--home", "H", "list"],
        ["contacts", "list", "--as", "alice", "--all", "--home", "H"],
    ):
        listing = _parse(argv)
        assert (listing.func, listing.person, listing.all, listing.home) == (
            cmd_contacts,
            "alice",
            True,
            "H",
        ), argv
    bare = _parse(["contacts", "list"])
    assert (bare.func, bare.person, bare.all, bare.home) == (cmd_contacts, None, False, None)


def test_a_word_too_many_is_counted_not_quoted() -> None:
    result = run_cli("send", "--from", "alice", "--to", "bob", "hello", "-the-plan-is-x")
    assert_refused(result, 2, "1 word(s) more than 'send' takes", secrets=["the-plan-is-x"])
    spaced = run_cli("send", "--from", "alice", "--to", "bob", "the", "plan-is-x")
    assert_refused(spaced, 2, "1 word(s) more than 'send' takes", secrets=["plan-is-x"])


def test_send_takes_as_for_from_and_no_option_by_a_prefix_of_its_name() -> None:
    from securecomm.cli import _parse

    # read, inbox and unsend say who you are with --as: send takes it too.
    args = _parse(["send", "--as", "alice", "--to", "bob", "hello"])
    assert (args.sender, args.to, args.text, args.ask_passphrase) == (
        "alice",
        ["bob"],
        "hello",
        False,
    )
    # A prefix is no option: "--ask" was --ask-passphrase, "--fo" --force.
    for argv in (
        ["send", "--from", "alice", "--to", "bob", "--ask", "hello"],
        ["read", "0" * 32, "--as", "bob", "--fo"],
        ["inbox", "--as", "bob", "--ho", "elsewhere"],
    ):
        assert_usage_error(run_cli(*argv))


def test_an_unknown_option_is_told_with_its_own_commands_usage() -> None:
    """Not with the top level's "usage: securecomm [-h] [--version] COMMAND ...", which
    says nothing of what the command takes."""
    for argv, command in (
        (["read", "0" * 32, "--as", "bob", "--bogus"], "read"),
        (["sessions", "--as", "bob"], "sessions"),
        (["custodian", "approve", "--name", "alpha", "0" * 32, "--zz"], "custodian approve"),
        (["send", "--from", "alice", "--to", "bob", "hi", "--zz"], "send"),
        (["combine", "--zz"], "combine"),
    ):
        result = run_cli(*argv)
        assert_usage_error(result)
        assert result.err.startswith(f"usage: securecomm {command} [-h]"), result.err
        assert f"securecomm {command}: error: unrecognized arguments: " in result.err


def test_someone_not_in_a_local_network_is_named_with_who_is(tmp_path: Path) -> None:
    from securecomm.local.home import init_home

    init_home(tmp_path / "data")
    for argv in (["inbox", "--as", "carol"], ["send", "--from", "carol", "--to", "bob", "hi"]):
        result = run_cli(*argv, "--home", tmp_path / "data")
        # Not "the data directory is not set up", which it is.
        assert_refused(result, 1, "no one named 'carol' in", "its people: alice, ")
        assert "securecomm register carol --home" in result.err


def test_combine_refuses_fewer_than_threshold(canary_shares: list[str]) -> None:
    result = run_cli("combine", *canary_shares[:2])
    assert_refused(result, 2, "2 share(s) given, threshold is 3", secrets=[CANARY])
    single = run_cli("combine", stdin=canary_shares[4].encode())
    assert_refused(single, 2, "1 share(s) given, threshold is 3", secrets=[CANARY])


def test_combine_refuses_a_duplicate_share(canary_shares: list[str]) -> None:
    result = run_cli("combine", canary_shares[0], canary_shares[1], canary_shares[0])
    assert_refused(result, 2, "share 3", "repeats the index of share 1", secrets=[CANARY])


def test_combine_refuses_shares_of_two_splits() -> None:
    first, second = split(CANARY), split(CANARY)
    result = run_cli("combine", first[0], first[1], second[2])
    assert_refused(result, 2, "share 3", "from split", secrets=[CANARY])
    other_threshold = split(CANARY, 5, 2)
    mixed = run_cli("combine", first[0], first[1], other_threshold[2])
    assert_refused(mixed, 2, "share 3", "from split", secrets=[CANARY])


def test_combine_refuses_an_extra_share_that_disagrees(canary_shares: list[str]) -> None:
    # A share with a valid checksum but a wrong value: only the extra-share check sees it.
    good = Share.from_text(canary_shares[3])
    wrong_value = bytes([good.value[0] ^ 0x01]) + good.value[1:]
    forged = Share(good.split_id, good.threshold, good.index, wrong_value).to_text()
    result = run_cli("combine", *canary_shares[:3], forged)
    assert_refused(result, 2, "share 4", "does not agree", secrets=[CANARY])


@pytest.mark.parametrize("stdin", [b"", b"\n", b"\n  \n\t\n"])
def test_combine_refuses_empty_input(stdin: bytes) -> None:
    assert_refused(run_cli("combine", stdin=stdin), 2, "no shares given")


def test_combine_refuses_garbage_line() -> None:
    result = run_cli("combine", stdin=b"hello world\n")
    assert_refused(result, 2, "share 1", "securecomm-share-v1:")


def test_split_refuses_empty_secret() -> None:
    assert_refused(run_cli("split", stdin=b""), 2, "the secret is empty")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-t", "1"], "threshold 1 is below the minimum 2"),
        (["-t", "0"], "threshold 0 is below the minimum 2"),
        (["-t", "-3"], "threshold -3 is below the minimum 2"),
        (["-t", "6", "-n", "5"], "threshold 6 is above the number of shares 5"),
        (["-n", "2"], "threshold 3 is above the number of shares 2"),
        (["-n", "256"], "256 shares asked for, at most 255 exist"),
        (["-n", "256", "-t", "256"], "at most 255"),
    ],
)
def test_split_refuses_impossible_parameters(options: list[str], message: str) -> None:
    result = run_cli("split", *options, stdin=CANARY)
    assert_refused(result, 2, message, secrets=[CANARY])


def test_impossible_parameters_are_said_before_the_secret_is_read(tmp_path: Path) -> None:
    """`split -n 2 -t 3` read the secret first (typed in, on a terminal) and then said "the
    secret is empty" or refused n and t; `encrypt` read the message and asked for the key's
    passphrase before refusing them."""
    said = "threshold 3 is above the number of shares 2"
    assert_refused(run_cli("split", "-n", "2", stdin=b""), 2, said)
    missing = tmp_path / "not-there.txt"
    encrypted = run_cli("encrypt", missing, "--shares-out", tmp_path / "s", "-n", "2")
    assert_refused(encrypted, 2, said)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["relay", "serve", "--port", "70000"], "'70000' is not a port: expected 1 to 65535"),
        (["relay", "serve", "--port", "-1"], "'-1' is not a port"),
        (["custodian", "serve", "--port", "0"], "'0' is not a port"),
        (["relay", "serve", "--workers", "0"], "'0': expected 1 or more"),
        (["custodian", "serve", "--workers", "-3"], "'-3': expected 1 or more"),
        (["up", "--workers", "0"], "'0': expected 1 or more"),
    ],
)
def test_a_port_or_worker_count_out_of_range_is_refused_as_typed(
    tmp_path: Path, argv: list[str], said: str
) -> None:
    """`relay serve --port 70000` said "relay listening on http://127.0.0.1:70000" and
    listened on 4464 (70000 modulo 65536); `--port -1` said "Servname not supported for
    ai_socktype"; `--workers -3` printed that it listened, then gunicorn's "Value must be
    positive"; `--workers 0` started a relay with no worker to answer."""
    home = tmp_path / "home"
    assert_refused(run_cli(*argv, "--home", home), 2, said)
    assert not home.exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--listen", "127.0.0.1:70000"], "expected HOST:PORT, the port 0 (any free one) to"),
        (["--upstream", "127.0.0.1:5000"], "--upstream: '127.0.0.1:5000' is not an http(s)://"),
        (["--limit", "-1"], "argument --limit: '-1': expected 1 or more"),
    ],
)
def test_mitm_refuses_what_it_cannot_listen_on_or_forward_to(argv: list[str], said: str) -> None:
    """`mitm --listen 127.0.0.1:70000` ended in "internal error (OverflowError)"; an
    --upstream without its scheme, and a negative --limit, were taken: the proxy listened
    and every exchange failed, or nothing was ever altered."""
    options = {"--listen": "127.0.0.1:0", "--upstream": "http://127.0.0.1:9"}
    options[argv[0]] = argv[1]
    args = [word for pair in options.items() for word in pair]
    if argv[0] == "--limit":
        args += argv
    assert_refused(run_cli("mitm", *args, "--mode", "flip"), 2, said)


def test_an_operator_home_that_joined_no_network_is_told_to_join(tmp_path: Path) -> None:
    """An operator who made their key and skipped `join` was sent to this machine's
    embedded defaults (127.0.0.1:5101 ...): "cannot reach" on their own machine, or
    "only alpha's operator may do this" from another network's alpha running there."""
    home = tmp_path / "op-alpha"
    made = run_cli("keygen", "alpha-operator", "--out", home / "users", "--no-passphrase")
    assert made.code == 0, made.err
    for argv in (
        ["custodian", "pending", "--name", "alpha"],
        ["custodian", "pending"],  # the custodian whose operator's key the home holds
        ["custodian", "approve", "0" * 32, "alpha"],
        ["audit", "verify", "--remote", "--name", "alpha"],
    ):
        refused = run_cli(*argv, "--home", home)
        assert_refused(refused, 2, f"{home} joined no network: it does not know where")
        assert f"securecomm join network.json --home {home}" in refused.err


def test_split_255_shares_is_the_limit() -> None:
    lines = split(SECRET, 255, 2)
    assert len(lines) == 255
    assert run_cli("combine", lines[254], lines[0]).out == SECRET


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nosuchcommand"],
        ["split", "-n", "x"],
        ["split", "-t", "2.5"],
        ["split", "--bogus"],
        ["combine", "--out"],
        ["keygen"],
        ["keygen", "a", "--ask-passphrase", "--passphrase-file", "p"],
        ["encrypt", "file.txt"],
        ["decrypt", "file.scm"],
        ["decrypt", "file.scm", "--shares"],
        ["demo", "extra"],
    ],
)
def test_argument_errors_exit_2_with_usage(argv: list[str]) -> None:
    assert_usage_error(run_cli(*argv))


# help and version


@pytest.mark.parametrize(
    ("argv", "phrases"),
    [
        (
            ["--help"],
            [
                "AES-256-GCM",
                "Shamir's secret sharing",
                "split",
                "combine",
                "keygen",
                "encrypt",
                "decrypt",
                "demo",
            ],
        ),
        (["split", "--help"], ["print n shares", "a trailing newline included", "-n", "-t"]),
        (["combine", "--help"], ["Rebuild a secret from at least t shares", "--out"]),
        (["keygen", "--help"], ["NAME.key", "mode 0600", "fingerprint", "--passphrase-file"]),
        (["encrypt", "--help"], ["encrypt FILE", "--shares-out", "--key", "--to"]),
        (["decrypt", "--help"], ["Check the envelope's signature", "--shares", "--sender"]),
        (["demo", "--help"], ["send a message from alice to bob", "--offline"]),
    ],
)
def test_help_exits_0_and_says_what_the_command_does(argv: list[str], phrases: list[str]) -> None:
    result = run_cli(*argv)
    assert result.code == 0
    assert result.err == ""
    flat = " ".join(result.text.split())
    assert flat.startswith("usage: securecomm")
    for phrase in phrases:
        assert phrase in flat


def test_version() -> None:
    result = run_cli("--version")
    assert result.code == 0
    assert result.text.strip() == f"securecomm {securecomm.__version__}"


# keygen


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_writes_key_and_pub(tmp_path: Path) -> None:
    result = run_cli("keygen", "alice", "--out", tmp_path)
    assert result.code == 0, result.err
    key, pub = tmp_path / "alice.key", tmp_path / "alice.pub"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alice.key", "alice.pub"]
    assert mode(key) == 0o600
    key_text = key.read_text()
    assert key_text.startswith("securecomm-identity: alice\n")
    assert key_text.count("-----BEGIN PRIVATE KEY-----") == 2
    assert "ENCRYPTED" not in key_text
    public = json.loads(pub.read_bytes())
    assert public["name"] == "alice"
    assert public["v"] == 1
    identity = Identity.load(key)
    assert public == identity.public.to_json()
    assert f"fingerprint: {identity.public.short_fingerprint()}" in result.text
    assert "NOT encrypted" in result.text
    assert "warning:" in result.err


def test_keygen_takes_no_passphrase_as_register_does(tmp_path: Path) -> None:
    """`keygen NAME --no-passphrase`, the option register and devices init take, was
    refused as unrecognised; it is keygen's default, said without the warning."""
    result = run_cli("keygen", "alice", "--out", tmp_path, "--no-passphrase")
    assert result.code == 0, result.err
    Identity.load(tmp_path / "alice.key")
    assert "NOT encrypted" in result.text and "warning:" not in result.err
    both = run_cli("keygen", "bob", "--out", tmp_path, "--no-passphrase", "--ask-passphrase")
    assert_refused(both, 2, "not allowed with argument --no-passphrase")
    assert not (tmp_path / "bob.key").exists()


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert run_cli("keygen", "alice", "--out", tmp_path).code == 0
    key, pub = tmp_path / "alice.key", tmp_path / "alice.pub"
    before = key.read_bytes(), pub.read_bytes()
    refused = run_cli("keygen", "alice", "--out", tmp_path)
    assert_refused(refused, 1, "alice.key exists", "--force")
    assert (key.read_bytes(), pub.read_bytes()) == before
    # The public file alone is enough to refuse.
    key.unlink()
    assert_refused(run_cli("keygen", "alice", "--out", tmp_path), 1, "alice.pub exists")
    assert not key.exists()
    assert pub.read_bytes() == before[1]
    forced = run_cli("keygen", "alice", "--out", tmp_path, "--force")
    assert forced.code == 0, forced.err
    assert key.exists()
    assert pub.read_bytes() != before[1]
    assert mode(key) == 0o600


def test_keygen_refuses_a_bad_name(tmp_path: Path) -> None:
    result = run_cli("keygen", "Alice", "--out", tmp_path)
    assert_refused(result, 2, "'Alice' is not a valid name")
    assert list(tmp_path.iterdir()) == []


def test_keygen_refuses_an_empty_or_missing_passphrase_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert_refused(
        run_cli("keygen", "alice", "--out", tmp_path, "--passphrase-file", empty),
        2,
        "the passphrase file is empty",
    )
    assert_refused(
        run_cli("keygen", "alice", "--out", tmp_path, "--passphrase-file", tmp_path / "none"),
        1,
        "cannot read",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("12345678", "is only digits"),
        ("qwertyuiop", "is a run of the alphabet, the digits or a keyboard row"),
        ("Password1", "is one of the passphrases guessers try first"),
        ("short", "is shorter than 8 characters"),
    ],
)
def test_keygen_refuses_a_weak_passphrase_saying_why(tmp_path: Path, weak: str, why: str) -> None:
    """A key file locked with "12345678" is as good as open: a guesser tries it first."""
    secret = tmp_path / "secret"
    secret.write_text(weak + "\n")
    out = tmp_path / "out"
    assert_refused(
        run_cli("keygen", "alice", "--out", out, "--passphrase-file", secret),
        2,
        f"the new passphrase {why}: too easy to guess, so no key was locked with it",
    )
    assert not out.exists()


@pytest.fixture(scope="module")
def alice_encrypted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(directory, passphrase file, wrong passphrase file) with alice.key encrypted."""
    directory = tmp_path_factory.mktemp("alice")
    right, wrong = directory / "right.txt", directory / "wrong.txt"
    right.write_text("correct horse battery staple\n")
    wrong.write_text("incorrect mule\n")
    result = run_cli("keygen", "alice", "--out", directory, "--passphrase-file", right)
    assert result.code == 0, result.err
    assert "encrypted with your passphrase" in result.text
    assert result.err == ""
    return directory, right, wrong


def test_keygen_with_passphrase_encrypts_the_key(alice_encrypted: tuple[Path, Path, Path]) -> None:
    directory, _, _ = alice_encrypted
    key = directory / "alice.key"
    text = key.read_text()
    assert mode(key) == 0o600
    assert text.count("-----BEGIN ENCRYPTED PRIVATE KEY-----") == 2
    assert "BEGIN PRIVATE KEY" not in text
    assert "battery" not in text


def test_encrypt_with_wrong_passphrase_fails(alice_encrypted: tuple[Path, Path, Path]) -> None:
    directory, right, wrong = alice_encrypted
    message = directory / "wrong-pass-message.txt"
    message.write_bytes(PLAINTEXT)
    shares_dir = directory / "wrong-pass-shares"
    result = run_cli(
        "encrypt",
        message,
        "--shares-out",
        shares_dir,
        "--key",
        directory / "alice.key",
        "--passphrase-file",
        wrong,
    )
    assert_refused(
        result,
        1,
        "wrong passphrase",
        "alice",
        secrets=[PLAINTEXT_MARKER, "incorrect mule", right.read_text().strip()],
    )
    assert not shares_dir.exists()
    assert not Path(f"{message}.scm").exists()


def test_encrypt_with_encrypted_key_and_no_passphrase_fails(
    alice_encrypted: tuple[Path, Path, Path],
) -> None:
    directory, _, _ = alice_encrypted
    message = directory / "no-pass-message.txt"
    message.write_bytes(PLAINTEXT)
    shares_dir = directory / "no-pass-shares"
    result = run_cli(
        "encrypt", message, "--shares-out", shares_dir, "--key", directory / "alice.key"
    )
    assert_refused(
        result, 1, "a passphrase is needed", "--passphrase-file", secrets=[PLAINTEXT_MARKER]
    )
    assert not shares_dir.exists()


def test_encrypt_with_right_passphrase_signs_as_alice(
    alice_encrypted: tuple[Path, Path, Path],
) -> None:
    directory, right, _ = alice_encrypted
    message = directory / "signed-message.txt"
    message.write_bytes(PLAINTEXT)
    shares_dir = directory / "signed-shares"
    result = run_cli(
        "encrypt",
        message,
        "--shares-out",
        shares_dir,
        "--key",
        directory / "alice.key",
        "--passphrase-file",
        right,
    )
    assert result.code == 0, result.err
    assert result.err == ""
    shares = sorted(shares_dir.iterdir())
    decrypted = run_cli("decrypt", f"{message}.scm", "--shares", *shares[:3])
    assert decrypted.code == 0, decrypted.err
    assert decrypted.out == PLAINTEXT
    fingerprint = Identity.load(
        directory / "alice.key", b"correct horse battery staple"
    ).public.short_fingerprint()
    assert f"signed by alice ({fingerprint})" in decrypted.err


# encrypt and decrypt


@dataclass(frozen=True)
class Sealed:
    directory: Path
    envelope: Path
    shares: list[Path]  # by index: shares[0] has index 1
    encrypt_stdout: str


def seal(directory: Path, plaintext: bytes, *extra: object) -> Sealed:
    directory.mkdir(parents=True, exist_ok=True)
    message = directory / "message.bin"
    message.write_bytes(plaintext)
    shares_dir = directory / "shares"
    result = run_cli("encrypt", message, "--shares-out", shares_dir, *extra)
    assert result.code == 0, result.err
    shares = sorted(shares_dir.iterdir(), key=lambda p: int(p.name.split("share-")[1][:-4]))
    return Sealed(directory, Path(f"{message}.scm"), shares, result.text)


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    return seal(tmp_path_factory.mktemp("sealed"), PLAINTEXT)


@pytest.fixture(scope="module")
def other_sealed(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    return seal(tmp_path_factory.mktemp("other"), PLAINTEXT)


def test_encrypt_writes_envelope_and_five_private_shares(sealed: Sealed) -> None:
    assert sealed.envelope.exists()
    data = sealed.envelope.read_bytes()
    envelope = canonical.loads(data)
    message_id = envelope["header"]["id"]
    assert f"envelope: {sealed.envelope} (message {message_id})" in sealed.encrypt_stdout
    assert "5 shares, any 3 decrypt" in sealed.encrypt_stdout
    assert [p.name for p in sealed.shares] == [f"{message_id}.share-{i}.txt" for i in range(1, 6)]
    for index, path in enumerate(sealed.shares, start=1):
        assert str(path) in sealed.encrypt_stdout
        assert mode(path) == 0o600
        share = Share.from_text(path.read_text())
        assert (share.index, share.threshold) == (index, 3)
        assert share.split_id.hex() == message_id
        assert PLAINTEXT_MARKER.encode() not in path.read_bytes()
    assert PLAINTEXT_MARKER.encode() not in data
    assert PLAINTEXT_MARKER not in sealed.encrypt_stdout


@pytest.mark.parametrize("chosen", THREE_OF_FIVE)
def test_decrypt_any_three_shares_to_out(
    tmp_path: Path, sealed: Sealed, chosen: tuple[int, ...]
) -> None:
    out = tmp_path / "plain.bin"
    result = run_cli(
        "decrypt", sealed.envelope, "--shares", *(sealed.shares[i] for i in chosen), "--out", out
    )
    assert result.code == 0, result.err
    assert result.out == b""
    assert out.read_bytes() == PLAINTEXT
    assert "signed by local" in result.err


@pytest.mark.parametrize("chosen", [(4, 2, 0), (1, 3, 4), *FOUR_OR_FIVE_OF_FIVE])
def test_decrypt_to_stdout(sealed: Sealed, chosen: tuple[int, ...]) -> None:
    result = run_cli("decrypt", sealed.envelope, "--shares", *(sealed.shares[i] for i in chosen))
    assert result.code == 0, result.err
    assert result.out == PLAINTEXT
    assert PLAINTEXT_MARKER not in result.err


def test_encrypt_from_stdin(tmp_path: Path) -> None:
    envelope, shares_dir = tmp_path / "in.scm", tmp_path / "s"
    result = run_cli("encrypt", "--shares-out", shares_dir, "-o", envelope, stdin=PLAINTEXT)
    assert result.code == 0, result.err
    shares = sorted(shares_dir.iterdir())
    assert len(shares) == 5
    decrypted = run_cli("decrypt", envelope, "--shares", *shares[2:])
    assert (decrypted.code, decrypted.out) == (0, PLAINTEXT)


def test_encrypt_with_other_n_and_t(tmp_path: Path) -> None:
    sealed = seal(tmp_path, PLAINTEXT, "-n", 7, "-t", 4)
    assert len(sealed.shares) == 7
    assert "7 shares, any 4 decrypt" in sealed.encrypt_stdout
    three = run_cli("decrypt", sealed.envelope, "--shares", *sealed.shares[:3])
    assert_refused(three, 2, "3 good share(s) of the 4 needed", secrets=[PLAINTEXT_MARKER])
    four = run_cli("decrypt", sealed.envelope, "--shares", *sealed.shares[3:])
    assert (four.code, four.out) == (0, PLAINTEXT)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["-t", "1"], "threshold 1 is below the minimum 2"),
        (["-t", "6", "-n", "5"], "threshold 6 is above the number of shares 5"),
        (["-n", "256", "-t", "3"], "at most 255"),
    ],
)
def test_encrypt_refuses_impossible_parameters(
    tmp_path: Path, options: list[str], message: str
) -> None:
    source = tmp_path / "m.txt"
    source.write_bytes(PLAINTEXT)
    result = run_cli("encrypt", source, "--shares-out", tmp_path / "s", *options)
    assert_refused(result, 2, message, secrets=[PLAINTEXT_MARKER])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.txt"]


def test_decrypt_with_two_shares_writes_nothing(tmp_path: Path, sealed: Sealed) -> None:
    out = tmp_path / "plain.bin"
    result = run_cli("decrypt", sealed.envelope, "--shares", *sealed.shares[3:], "--out", out)
    assert_refused(
        result, 2, "2 good share(s) of the 3 needed", secrets=[PLAINTEXT, PLAINTEXT_MARKER]
    )
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_decrypt_counts_the_same_share_twice_once(tmp_path: Path, sealed: Sealed) -> None:
    """Spec 7.7 step 6: a repeat of a good share is that share (its digest fixes every
    byte): named, counted once, never an error of its own."""
    out = tmp_path / "plain.bin"
    shares = [sealed.shares[0], sealed.shares[1], sealed.shares[0]]
    result = run_cli("decrypt", sealed.envelope, "--shares", *shares, "--out", out)
    assert_refused(
        result,
        2,
        f"warning: skipped share 3 ({sealed.shares[0]}): the same share as share 1",
        "2 good share(s) of the 3 needed (1 skipped, named above)",
        secrets=[PLAINTEXT_MARKER],
    )
    assert not out.exists()
    result = run_cli("decrypt", sealed.envelope, "--shares", *shares, sealed.shares[4])
    assert (result.code, result.out) == (0, PLAINTEXT), result.err
    assert "skipped share 3" in result.err


def test_decrypt_skips_a_share_of_another_encryption(
    tmp_path: Path, sealed: Sealed, other_sealed: Sealed
) -> None:
    """Spec 7.7 steps 6-7: the share that is not this message's is skipped and named, as
    `read` skips a custodian's; with too few left, nothing is decrypted."""
    out = tmp_path / "plain.bin"
    shares = [sealed.shares[0], other_sealed.shares[2], sealed.shares[1]]
    result = run_cli("decrypt", sealed.envelope, "--shares", *shares, "--out", out)
    message_id = canonical.loads(sealed.envelope.read_bytes())["header"]["id"]
    assert_refused(
        result,
        2,
        f"share 2 ({other_sealed.shares[2]}) does not belong to message {message_id}",
        "2 good share(s) of the 3 needed",
        secrets=[PLAINTEXT_MARKER],
    )
    assert not out.exists()
    result = run_cli("decrypt", sealed.envelope, "--shares", *shares, sealed.shares[3])
    assert (result.code, result.out) == (0, PLAINTEXT), result.err
    assert f"warning: skipped share 2 ({other_sealed.shares[2]}) does not belong" in result.err


@pytest.mark.parametrize("order", [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (2, 4, 0, 3, 1)])
def test_decrypt_with_all_shares_in_any_order(sealed: Sealed, order: tuple[int, ...]) -> None:
    result = run_cli("decrypt", sealed.envelope, "--shares", *(sealed.shares[i] for i in order))
    assert (result.code, result.out) == (0, PLAINTEXT), result.err
    assert "skipped" not in result.err


@pytest.mark.parametrize("position", [0, 20, 30, -3])
def test_decrypt_names_a_damaged_share_file(tmp_path: Path, sealed: Sealed, position: int) -> None:
    text = sealed.shares[3].read_text().rstrip("\n")
    damaged = tmp_path / "damaged.txt"
    damaged.write_text(change_char(text, position % len(text)) + "\n")
    out = tmp_path / "plain.bin"
    shares = [sealed.shares[0], damaged, sealed.shares[2]]
    result = run_cli("decrypt", sealed.envelope, "--shares", *shares, "--out", out)
    assert_refused(
        result,
        2,
        f"skipped share 2 ({damaged})",
        secrets=[PLAINTEXT_MARKER, body(text), *(body(p.read_text().strip()) for p in shares)],
    )
    assert not out.exists()


def test_decrypt_reads_an_envelope_file_an_editor_ended_with_a_newline(
    tmp_path: Path, sealed: Sealed
) -> None:
    """Spec 7.1.1: one LF after the envelope's bytes is read; two are refused."""
    for ending, code in ((b"\n", 0), (b"\n\n", 2)):
        copy = tmp_path / "copy.scm"
        copy.write_bytes(sealed.envelope.read_bytes() + ending)
        result = run_cli("decrypt", copy, "--shares", *sealed.shares[:3])
        assert result.code == code, result.err
        if code == 0:
            assert result.out == PLAINTEXT
        else:
            assert_refused(result, 2, "not in canonical form", secrets=[PLAINTEXT_MARKER])


def test_decrypt_names_the_wrong_file_given_for_the_envelope_or_the_sender(
    tmp_path: Path, sealed: Sealed, alice_encrypted: tuple[Path, Path, Path]
) -> None:
    """The file that was encrypted, or a share, given for the envelope said only "envelope:
    not UTF-8"; a private key given for --sender said "not JSON". Each names the file and
    what to give instead, and writes nothing."""
    out = tmp_path / "plain.bin"
    for wrong in (sealed.directory / "message.bin", sealed.shares[0]):
        result = run_cli("decrypt", wrong, "--shares", *sealed.shares[:3], "--out", out)
        assert_refused(result, 2, f"{wrong}: envelope: not", secrets=[PLAINTEXT_MARKER])
        assert "hint: decrypt takes the envelope that 'securecomm encrypt' wrote" in result.err
    key = alice_encrypted[0] / "alice.key"
    given = run_cli(
        "decrypt", sealed.envelope, "--sender", key, "--shares", *sealed.shares[:3], "-o", out
    )
    assert_refused(given, 1, f"{key}: this is a private key file (alice.key)", "alice.pub")
    assert "PRIVATE" not in given.err
    assert not out.exists()


def test_decrypt_skips_a_missing_share_file(tmp_path: Path, sealed: Sealed) -> None:
    missing = tmp_path / "no-such-share.txt"
    shares = [missing, *sealed.shares[2:]]
    result = run_cli("decrypt", sealed.envelope, "--shares", *shares)
    assert (result.code, result.out) == (0, PLAINTEXT), result.err
    assert f"warning: skipped share 1 ({missing}): cannot read the file (No such" in result.err


# Tampered envelopes


def flip_base64_field(document: dict[str, object], field: str, byte: int = 0) -> None:
    raw = bytearray(base64.b64decode(str(document[field])))
    raw[byte] ^= 0x01
    document[field] = base64.b64encode(bytes(raw)).decode()


def resign(document: dict[str, object], identity: Identity) -> bytes:
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    signature = identity.sign("envelope", unsigned)
    return canonical.dumps({**unsigned, "signature": base64.b64encode(signature).decode()})


def tamper_ciphertext_char(data: bytes) -> bytes:
    document = json.loads(data)
    text = document["ciphertext"]
    # The first character never touches padding bits: the result is still canonical base64.
    document["ciphertext"] = ("B" if text[0] == "A" else "A") + text[1:]
    return canonical.dumps(document)


def tamper_bit(field: str) -> Callable[[bytes], bytes]:
    def tamper(data: bytes) -> bytes:
        document = json.loads(data)
        flip_base64_field(document, field)
        return canonical.dumps(document)

    return tamper


def tamper_created(data: bytes) -> bytes:
    document = json.loads(data)
    document["header"]["created"] += 1
    return canonical.dumps(document)


def tamper_threshold(data: bytes) -> bytes:
    document = json.loads(data)
    document["header"]["threshold"] = 2
    return canonical.dumps(document)


def tamper_swap_digests(data: bytes) -> bytes:
    document = json.loads(data)
    custodians = document["header"]["custodians"]
    custodians[0]["share_digest"], custodians[1]["share_digest"] = (
        custodians[1]["share_digest"],
        custodians[0]["share_digest"],
    )
    return canonical.dumps(document)


def tamper_resign_as_attacker(data: bytes) -> bytes:
    # Anyone can re-sign with a key of their own and claim to be the sender;
    # the header is the AAD, so decryption must still fail.
    attacker = Identity.generate("local")
    document = json.loads(data)
    document["header"]["sender"] = attacker.public.to_json()
    flip_base64_field(document, "ciphertext")
    return resign(document, attacker)


def tamper_resign_as_attacker_same_ciphertext(data: bytes) -> bytes:
    attacker = Identity.generate("mallory")
    document = json.loads(data)
    document["header"]["sender"] = attacker.public.to_json()
    return resign(document, attacker)


def tamper_not_canonical(data: bytes) -> bytes:
    return json.dumps(json.loads(data), indent=1).encode()


def tamper_truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


TAMPERS = [
    ("ciphertext-char", tamper_ciphertext_char, 1),
    ("ciphertext-bit", tamper_bit("ciphertext"), 1),
    ("tag-bit", tamper_bit("tag"), 1),
    ("nonce-bit", tamper_bit("nonce"), 1),
    ("created", tamper_created, 1),
    ("threshold", tamper_threshold, 1),
    ("swapped-digests", tamper_swap_digests, 1),
    ("resigned-by-attacker", tamper_resign_as_attacker, 1),
    ("resigned-by-attacker-same-ciphertext", tamper_resign_as_attacker_same_ciphertext, 1),
    ("not-canonical", tamper_not_canonical, 2),
    ("truncated", tamper_truncate, 2),
]


@pytest.mark.parametrize(
    ("tamper", "code"), [(t[1], t[2]) for t in TAMPERS], ids=[t[0] for t in TAMPERS]
)
def test_decrypt_refuses_a_tampered_envelope(
    tmp_path: Path, sealed: Sealed, tamper: Callable[[bytes], bytes], code: int
) -> None:
    tampered = tmp_path / "tampered.scm"
    tampered.write_bytes(tamper(sealed.envelope.read_bytes()))
    assert tampered.read_bytes() != sealed.envelope.read_bytes()
    out = tmp_path / "plain.bin"
    result = run_cli("decrypt", tampered, "--shares", *sealed.shares[:3], "--out", out)
    assert_refused(result, code, secrets=[PLAINTEXT, PLAINTEXT_MARKER])
    assert not out.exists()
    to_stdout = run_cli("decrypt", tampered, "--shares", *sealed.shares[2:])
    assert_refused(to_stdout, code, secrets=[PLAINTEXT, PLAINTEXT_MARKER])


def test_tampered_signed_envelope_is_blamed_on_the_signature(
    tmp_path: Path, sealed: Sealed
) -> None:
    tampered = tmp_path / "tampered.scm"
    tampered.write_bytes(tamper_ciphertext_char(sealed.envelope.read_bytes()))
    result = run_cli("decrypt", tampered, "--shares", *sealed.shares[:3])
    assert_refused(result, 1, "signature does not verify", "nothing was written")


def test_resigned_envelope_fails_decryption_opaquely(tmp_path: Path, sealed: Sealed) -> None:
    tampered = tmp_path / "tampered.scm"
    tampered.write_bytes(tamper_resign_as_attacker(sealed.envelope.read_bytes()))
    result = run_cli("decrypt", tampered, "--shares", *sealed.shares[:3])
    assert_refused(result, 1, "decryption failed", "nothing was written")


# Signing identities


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bob and carol, keys without passphrase (fast), made by keygen."""
    directory = tmp_path_factory.mktemp("people")
    for name in ("bob", "carol"):
        result = run_cli("keygen", name, "--out", directory)
        assert result.code == 0, result.err
    return directory


@pytest.fixture(scope="module")
def sealed_by_bob(tmp_path_factory: pytest.TempPathFactory, people: Path) -> Sealed:
    return seal(tmp_path_factory.mktemp("by-bob"), PLAINTEXT, "--key", people / "bob.key")


def test_decrypt_with_sender_pub_from_keygen(sealed_by_bob: Sealed, people: Path) -> None:
    result = run_cli(
        "decrypt",
        sealed_by_bob.envelope,
        "--sender",
        people / "bob.pub",
        "--shares",
        *sealed_by_bob.shares[:3],
    )
    assert result.code == 0, result.err
    assert result.out == PLAINTEXT
    # encrypt sent the file's name along, encrypted (spec 7.10); decrypt only mentions it.
    assert result.err == "the sender named it 'message.bin'\n"


def test_decrypt_with_another_senders_pub_from_keygen(
    tmp_path: Path, sealed_by_bob: Sealed, people: Path
) -> None:
    out = tmp_path / "plain.bin"
    result = run_cli(
        "decrypt",
        sealed_by_bob.envelope,
        "--sender",
        people / "carol.pub",
        "--shares",
        *sealed_by_bob.shares[:3],
        "--out",
        out,
    )
    bob = Identity.load(people / "bob.key").public.short_fingerprint()
    carol = Identity.load(people / "carol.key").public.short_fingerprint()
    assert_refused(result, 1, f"'bob' ({bob})", f"'carol' ({carol})", secrets=[PLAINTEXT_MARKER])
    assert not out.exists()


def test_encrypt_to_a_recipient_pub_from_keygen(tmp_path: Path, people: Path) -> None:
    sealed = seal(tmp_path, PLAINTEXT, "--key", people / "bob.key", "--to", people / "carol.pub")
    envelope = canonical.loads(sealed.envelope.read_bytes())
    assert [r["name"] for r in envelope["header"]["recipients"]] == ["carol"]


def test_sender_check_with_canonical_pub_files(
    tmp_path: Path, sealed_by_bob: Sealed, people: Path
) -> None:
    # The same check as the two tests above, with the .pub files' bytes exactly
    # canonical JSON, so it holds whatever keygen writes after the JSON.
    pubs = {}
    for name in ("bob", "carol"):
        pubs[name] = tmp_path / f"{name}.pub"
        pubs[name].write_bytes((people / f"{name}.pub").read_bytes().rstrip(b"\n"))
    shares = sealed_by_bob.shares[1:4]
    good = run_cli("decrypt", sealed_by_bob.envelope, "--sender", pubs["bob"], "--shares", *shares)
    assert good.code == 0, good.err
    assert good.out == PLAINTEXT
    assert good.err == "the sender named it 'message.bin'\n"
    out = tmp_path / "plain.bin"
    bad = run_cli(
        "decrypt",
        sealed_by_bob.envelope,
        "--sender",
        pubs["carol"],
        "--shares",
        *shares,
        "--out",
        out,
    )
    bob = Identity.load(people / "bob.key").public.short_fingerprint()
    carol = Identity.load(people / "carol.key").public.short_fingerprint()
    assert_refused(bad, 1, f"'bob' ({bob})", f"'carol' ({carol})", secrets=[PLAINTEXT_MARKER])
    assert not out.exists()


def test_sender_signed_tampered_ciphertext_fails_decryption(
    tmp_path: Path, sealed_by_bob: Sealed, people: Path
) -> None:
    # Even the real sender cannot change the ciphertext under a valid signature unnoticed.
    document = json.loads(sealed_by_bob.envelope.read_bytes())
    flip_base64_field(document, "ciphertext", byte=-1)
    tampered = tmp_path / "tampered.scm"
    tampered.write_bytes(resign(document, Identity.load(people / "bob.key")))
    out = tmp_path / "plain.bin"
    result = run_cli("decrypt", tampered, "--shares", *sealed_by_bob.shares[:3], "--out", out)
    assert_refused(result, 1, "decryption failed", secrets=[PLAINTEXT, PLAINTEXT_MARKER])
    assert not out.exists()


# demo


def test_offline_demo() -> None:
    result = run_cli("demo", "--offline")
    assert result.code == 0, result.err
    text = result.text
    assert DEMO_MESSAGE in text
    assert text.count("refused") == 3
    assert "ACCEPTED" not in text
    assert "key rebuilt: yes" in text
    assert "share 2" in text
    assert result.err == ""


# Real processes


def test_console_script_split_then_combine(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "securecomm"
    assert script.exists()
    split_run = subprocess.run(
        [script, "split", "-n", "5", "-t", "3"],
        input=SECRET,
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert split_run.returncode == 0, split_run.stderr
    lines = split_run.stdout.decode().splitlines()
    assert len(lines) == 5
    assert all(line.startswith(TEXT_PREFIX) for line in lines)
    combined = run_process("combine", stdin="\n".join(lines[2:]).encode(), cwd=tmp_path)
    assert combined.returncode == 0, combined.stderr
    assert combined.stdout == SECRET


def test_process_names_a_changed_share(tmp_path: Path, canary_shares: list[str]) -> None:
    damaged = change_char(canary_shares[1], 30)
    result = run_process("combine", canary_shares[0], damaged, canary_shares[2], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"share 2" in result.stderr
    assert b"Traceback" not in result.stderr
    assert CANARY not in result.stderr


def test_process_encrypt_decrypt(tmp_path: Path) -> None:
    message = tmp_path / "m.bin"
    message.write_bytes(PLAINTEXT)
    encrypted = run_process("encrypt", message, "--shares-out", tmp_path / "s", cwd=tmp_path)
    assert encrypted.returncode == 0, encrypted.stderr
    shares = sorted((tmp_path / "s").iterdir())
    envelope = tmp_path / "m.bin.scm"
    decrypted = run_process("decrypt", envelope, "--shares", *shares[::2], cwd=tmp_path)
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout == PLAINTEXT
    out = tmp_path / "plain.bin"
    refused = run_process("decrypt", envelope, "--shares", *shares[:2], "--out", out)
    assert refused.returncode == 2
    assert refused.stdout == b""
    assert b"Traceback" not in refused.stderr
    assert PLAINTEXT_MARKER.encode() not in refused.stderr
    assert not out.exists()


def test_process_argument_error(tmp_path: Path) -> None:
    result = run_process("split", "-n", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(b"usage: securecomm split")


def test_seed_api_is_importable_from_the_package(tmp_path: Path) -> None:
    code = "\n".join(
        [
            "from securecomm import aes_encrypt, aes_decrypt, split_secret, recover_secret",
            "key = bytes(range(32))",
            "ciphertext, nonce, tag = aes_encrypt('hello', key)",
            "assert aes_decrypt(ciphertext, key, nonce, tag) == b'hello'",
            "shares = split_secret(123456789, 5, 3)",
            "assert recover_secret(shares[2:], 3) == 123456789",
            "print('ok')",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ok\n"


# A file that already exists is the user's: nothing replaces it without --force


def test_encrypt_does_not_replace_an_envelope_whose_shares_are_out(tmp_path: Path) -> None:
    first = seal(tmp_path, PLAINTEXT)
    envelope = first.envelope.read_bytes()
    again = run_cli("encrypt", first.directory / "message.bin", "--shares-out", tmp_path / "s2")
    assert again.code == 1, again.err
    assert "exists" in again.err and "--force" in again.err
    assert first.envelope.read_bytes() == envelope
    assert not (tmp_path / "s2").exists()
    forced = run_cli(
        "encrypt", first.directory / "message.bin", "--shares-out", tmp_path / "s2", "--force"
    )
    assert forced.code == 0, forced.err
    assert first.envelope.read_bytes() != envelope


def test_decrypt_and_combine_do_not_replace_a_file(tmp_path: Path, sealed: Sealed) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_bytes(b"keep me")
    shares = [str(p) for p in sealed.shares[:3]]
    refused = run_cli("decrypt", sealed.envelope, "--shares", *shares, "-o", mine)
    assert refused.code == 1 and "exists" in refused.err, refused.err
    texts = [Share.from_text(Path(p).read_text()).to_text() for p in shares]
    combined = run_cli("combine", *texts, "--out", mine)
    assert combined.code == 1 and "exists" in combined.err, combined.err
    assert mine.read_bytes() == b"keep me"
    forced = run_cli("decrypt", sealed.envelope, "--shares", *shares, "-o", mine, "--force")
    assert forced.code == 0, forced.err
    assert mine.read_bytes() == PLAINTEXT


def _installed_command(argv: list[str], before: str = "") -> subprocess.CompletedProcess[str]:
    """The installed command's entry point (``securecomm.__main__:run``) in a process of its
    own, ``before`` run first in it."""
    script = "\n".join(
        [
            "import atexit, sys",
            "from securecomm.__main__ import run",
            before,
            f"sys.argv = ['securecomm', *{argv!r}]",
            "run()",
        ]
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_the_command_skips_the_interpreters_teardown_but_not_its_exit_handlers_or_output() -> None:
    # Output still in Python's buffers when the command ends (stdout to a pipe is block
    # buffered), and an exit handler registered before it: both must come out.
    done = _installed_command(
        ["--version"],
        "atexit.register(lambda: print('exit handler ran', file=sys.stderr))\n"
        "sys.stdout.write('buffered ' * 2000)",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("buffered " * 2000)
    assert done.stdout.rstrip().endswith(f"securecomm {securecomm.__version__}")
    assert "exit handler ran" in done.stderr


def test_the_command_keeps_its_exit_statuses() -> None:
    refused = _installed_command(["no-such-command"])
    assert refused.returncode == 2
    assert "invalid choice" in refused.stderr
    broken = _installed_command(["split", "--file", "/no/such/file"])
    assert broken.returncode == 1 and "/no/such/file" in broken.stderr


def test_an_exit_with_a_sentence_is_status_1_with_the_sentence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from securecomm.__main__ import _status

    assert (_status(None), _status(0), _status(2)) == (0, 0, 2)
    assert _status("a sentence for the terminal") == 1
    assert "a sentence for the terminal" in capsys.readouterr().err


def test_output_piped_into_a_reader_that_stops_ends_quietly(tmp_path: Path) -> None:
    """`securecomm split ... | head -c 100`: the reader goes after 100 bytes of 600 KB; the
    command ends as `yes | head` does, status 141 (128 + SIGPIPE), nothing on stderr."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(256)) * 400)
    process = subprocess.Popen(
        [sys.executable, "-m", "securecomm", "split", "--file", str(secret)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(100)) == 100
    process.stdout.close()
    errors = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=30) == 141
    assert errors == b""


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_a_command_builds_only_its_part_of_the_parser_and_it_is_the_same_part() -> None:
    """Each command builds (and imports) only its own module's part of the parser: its
    part must be the one the whole parser has, help, options and all, and every command
    must be in the table, or it would be built with all the others."""
    from securecomm.cli import _GROUPS, build_parser

    whole = _commands(build_parser())
    assert set().union(*(commands for commands, _ in _GROUPS)) == set(whole)
    for name, parser in whole.items():
        part = _commands(build_parser(name))
        assert name in part and len(part) < len(whole)
        assert part[name].format_help() == parser.format_help()
        nested = (
            {k: v.format_help() for k, v in _commands(parser).items()}
            if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
            else {}
        )
        if nested:
            assert {k: v.format_help() for k, v in _commands(part[name]).items()} == nested
