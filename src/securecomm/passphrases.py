"""The rule a new passphrase must meet, before a key file or the page's store is locked with
it: long enough, and not one a guesser tries first.

The page applies the same rule (``web/js/passphrases.js``); ``vectors/passphrases.json``
holds the cases both are tested with. A passphrase that unlocks an existing key is never
held to it: the key was locked with it already.
"""

from __future__ import annotations

import re

__all__ = ["MIN_DISTINCT_CHARACTERS", "MIN_PASSPHRASE_LENGTH", "weakness"]

MIN_PASSPHRASE_LENGTH = 8  # characters
MIN_DISTINCT_CHARACTERS = 5

# Runs along the alphabet, the digits and keyboard rows (US, German and French layouts)
# and columns: a passphrase that is a stretch of one, either way, is tried early.
_RUNS = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "1234567890-=",
    "!@#$%^&*()_+",
    "qwertyuiop[]",
    "asdfghjkl;'",
    "zxcvbnm,./",
    "qwertzuiop",
    "yxcvbnm",
    "azertyuiop",
    "qsdfghjklm",
    "wxcvbn",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "1q2w3e4r5t6y7u8i9o0p",
    "q1w2e3r4t5y6u7i8o9p0",
    "zaq12wsxcde34rfvbgt56yhnmju78ik,.lo90p;/-",
)

# Passphrases that lists of leaked ones put near the top (written for this project, not
# copied from such a list), and this program's own name: lower case, 8 characters or more,
# of 5 different ones or more, as any shorter or plainer is refused already.
_COMMON = frozenset(
    {
        "password",
        "password1",
        "password12",
        "password123",
        "password!",
        "passw0rd",
        "p@ssword",
        "p@ssw0rd",
        "iloveyou",
        "iloveyou1",
        "sunshine",
        "sunshine1",
        "princess",
        "princess1",
        "football",
        "football1",
        "baseball",
        "basketball",
        "welcome1",
        "welcome123",
        "letmein1",
        "letmein123",
        "trustno1",
        "superman",
        "starwars",
        "whatever",
        "computer",
        "internet",
        "changeme",
        "changeme1",
        "admin123",
        "administrator",
        "abc12345",
        "abcd1234",
        "qwerty12",
        "qwerty123",
        "qwerty1234",
        "a1b2c3d4",
        "monkey123",
        "dragon123",
        "master123",
        "shadow123",
        "secret123",
        "freedom1",
        "mustang1",
        "michael1",
        "jennifer",
        "jordan23",
        "hello123",
        "charlie1",
        "chocolate",
        "butterfly",
        "starwars1",
        "securecomm",
        "securecomm1",
    }
)


def weakness(passphrase: str) -> tuple[str, str] | None:
    """Why ``passphrase`` is too easy to guess for a new key, as ``(code, why)``, or None.
    ``code`` names the rule (the shared cases compare it): ``short``, ``few_characters``,
    ``digits``, ``run``, ``common``; ``why`` completes "the passphrase ..."."""
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        return "short", f"is shorter than {MIN_PASSPHRASE_LENGTH} characters"
    if len(set(passphrase)) < MIN_DISTINCT_CHARACTERS:
        return "few_characters", f"has fewer than {MIN_DISTINCT_CHARACTERS} different characters"
    if re.fullmatch(r"[0-9]+", passphrase):
        return "digits", "is only digits"
    lowered = passphrase.lower()
    if any(lowered in run or lowered in run[::-1] for run in _RUNS):
        return "run", "is a run of the alphabet, the digits or a keyboard row"
    if lowered in _COMMON:
        return "common", "is one of the passphrases guessers try first"
    return None
