"""Canonical JSON (RFC 8785 subset): one spelling out, only that spelling in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securecomm import canonical, errors


def test_rfc8785_property_sorting_example() -> None:
    # RFC 8785 section 3.2.3: properties sort by their UTF-16 code units.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    text = canonical.dumps(value).decode("utf-8")
    order = [
        text.index(f'"{label}"')
        for label in (
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh",
        )
    ]
    assert order == sorted(order)


def test_string_escaping_follows_rfc8785() -> None:
    assert canonical.dumps('\u20ac$\u000f\nA\'B"\\\\"/') == (
        '"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'.encode()
    )
    assert canonical.dumps("\b\t\f\r\x7f\u2028") == '"\\b\\t\\f\\r\x7f\u2028"'.encode()


def test_compact_and_exact() -> None:
    assert canonical.dumps({"b": [1, True, None], "a": {}}) == b'{"a":{},"b":[1,true,null]}'
    assert canonical.dumps(-(2**53 - 1)) == b"-9007199254740991"


@pytest.mark.parametrize(
    "value", [1.5, 2**53, -(2**53), b"bytes", {1: "x"}, {"k": object()}, "\ud800"]
)
def test_values_outside_the_subset_are_refused(value: object) -> None:
    with pytest.raises(errors.FieldError):
        canonical.dumps(value)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"a": 1}', errors.NonCanonicalError),
        (b'{"b":1,"a":2}', errors.NonCanonicalError),
        (b'{"a":1.0}', errors.FormatError),
        (b'{"a":1e3}', errors.FormatError),
        (b'{"a":NaN}', errors.FormatError),
        (b'{"a":1,"a":1}', errors.FormatError),
        (b'"\\u0041"', errors.NonCanonicalError),
        (b'"\\/"', errors.NonCanonicalError),
        (b'"\\u00E9"', errors.NonCanonicalError),
        (b'{"a":1}\n', errors.NonCanonicalError),
        (b"\xff", errors.FormatError),
        (b"", errors.FormatError),
        (b'"\\ud800"', errors.FormatError),
        (b"9007199254740992", errors.FormatError),
        (b"[" * 100_000, errors.FormatError),
        (b"1" * 5000, errors.FormatError),
    ],
)
def test_loads_refuses_other_spellings(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical.loads(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_round_trip(value: object) -> None:
    data = canonical.dumps(value)
    assert canonical.loads(data) == value
    assert canonical.dumps(canonical.loads(data)) == data


@given(st.binary(max_size=100))
@settings(max_examples=300, deadline=None)
def test_loads_raises_only_its_own_errors(data: bytes) -> None:
    try:
        canonical.loads(data)
    except errors.SecureCommError:
        pass


def _reference(value: object) -> bytes:
    """The writer the C encoder's fast path must equal: canonical._write, node by node."""
    out: list[str] = []
    canonical._write(value, out, "$")
    return "".join(out).encode("utf-8")


_keys = st.text(st.characters(codec="utf-8"), max_size=4) | st.sampled_from(
    ["\U0001f600", "\ufb33", "\u20ac", "\r", "a", "\ue000x", "\U00010000"]
)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**54), max_value=2**54)
    | st.text(st.characters(codec="utf-8"), max_size=8)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(_keys, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(_values)
def test_the_fast_writer_equals_the_reference(value: object) -> None:
    """dumps takes the C encoder when it can; the bytes, or the refusal, must be the
    reference writer's exactly (astral keys and out-of-range integers go the slow way)."""
    try:
        expected = _reference(value)
    except errors.FieldError:
        with pytest.raises(errors.FieldError):
            canonical.dumps(value)
        return
    assert canonical.dumps(value) == expected
