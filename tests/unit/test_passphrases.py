"""The rule a new passphrase meets (securecomm/passphrases.py); vectors/passphrases.json
holds more cases, which the page's copy of the rule is tested with too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from securecomm.passphrases import weakness


@pytest.mark.parametrize(
    ("passphrase", "code"),
    [
        ("12345678", "digits"),  # what the page took, found walking it
        ("1234567", "short"),
        ("aaaa1111", "few_characters"),
        ("87654321", "digits"),
        ("abcdefgh", "run"),
        ("QWERTYUIOP", "run"),
        ("lkjhgfdsa", "run"),
        ("password", "common"),
        ("Qwerty123", "common"),
    ],
)
def test_a_weak_new_passphrase_is_refused_saying_why(passphrase: str, code: str) -> None:
    found = weakness(passphrase)
    assert found is not None and found[0] == code, found
    assert found[1].startswith(("is ", "has ")), found  # reads after "the passphrase"


@pytest.mark.parametrize(
    "passphrase", ["correct horse battery", "pia's new passphrase", "tz7#Qm2v", "qwerty12!x"]
)
def test_a_passphrase_of_its_own_is_taken(passphrase: str) -> None:
    assert weakness(passphrase) is None


def test_the_page_lists_the_same_runs_and_common_passphrases() -> None:
    """web/js/passphrases.js holds its own copy of both lists (vectors/passphrases.json
    tries a few entries of each in the browser): a change to one is made to the other."""
    from securecomm import passphrases

    js = (Path(passphrases.__file__).parent / "web" / "js" / "passphrases.js").read_text("utf-8")

    def listed(start: str) -> list[str]:
        block = js[js.index(start) :]
        return re.findall(r'^  "(.*)",$', block[: block.index("\n]")], re.MULTILINE)

    assert listed("const RUNS") == list(passphrases._RUNS)
    assert sorted(listed("const COMMON")) == sorted(passphrases._COMMON)
