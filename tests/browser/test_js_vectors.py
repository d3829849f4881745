"""Every case of the shared vectors/*.json, run in Chromium through the JS core.

The Python tests read the same files (tests/unit/test_vectors.py); here
tests/browser/vectors.js runs them and reports one result per case, and each
test checks that exactly the file's cases ran, in order, and all passed.
vectors/envelope.json belongs to the envelope module's tests; vectors/envelope-v2.json
runs here through tests/browser/envelope_runner.js, which knows the files' identities.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page

from securecomm import errors
from tests.browser.test_js_envelope import ROLES
from tests.unit._vectors import VECTORS

# (file, member holding the cases, runner in vectors.js)
SECTIONS = [
    ("nist-gcm-aes256.json", "vectors", "runGcm"),
    ("hpke-rfc9180.json", "vectors", "runHpke"),
    ("shamir.json", "split", "runShamirSplit"),
    ("shamir.json", "combine", "runShamirCombine"),
    ("shares.json", "encode", "runSharesEncode"),
    ("shares.json", "decode", "runSharesDecode"),
    ("shares.json", "combine", "runSharesCombine"),
    ("canonical.json", "valid", "runCanonicalValid"),
    ("canonical.json", "invalid", "runCanonicalInvalid"),
    ("canonical.json", "bodies", "runCanonicalBodies"),
    ("answers.json", "cases", "runAnswers"),
    ("encoding.json", "base64", "runBase64"),
    ("identity.json", "cases", "runPublicIdentity"),
    ("identity.json", "key_files", "runKeyFiles"),
    ("identity.json", "new_names", "runNewNames"),
    ("passphrases.json", "cases", "runPassphrases"),
    ("stream.json", "sealed", "runStreamSealed"),
    ("stream.json", "refusals", "runStreamRefusals"),
]


def expected_cases(name: str, member: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((VECTORS / name).read_text("utf-8"))[member]
    if name == "hpke-rfc9180.json":
        # The file holds only the suite of spec section 5; the runner filters on it too.
        for case in cases:
            assert (case["mode"], case["kem_id"], case["kdf_id"], case["aead_id"]) == (0, 32, 1, 2)
    return cases


def run(page: Page, runner: str, text: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = page.evaluate(
        "async ([runner, text]) => (await import('/tests/vectors.js'))[runner](text)",
        [runner, text],
    )
    return results


@pytest.mark.parametrize(
    ("name", "member", "runner"), SECTIONS, ids=[f"{n}:{m}" for n, m, _ in SECTIONS]
)
def test_every_case_passes(page: Page, name: str, member: str, runner: str) -> None:
    cases = expected_cases(name, member)
    assert cases, f"{name}: no {member} cases"
    results = run(page, runner, (VECTORS / name).read_text("utf-8"))
    assert [r["description"] for r in results] == [c["description"] for c in cases], (
        f"{name}:{member}: {len(results)} cases ran, the file has {len(cases)}"
    )
    failed = [f"{r['description']}: {r['detail']}" for r in results if not r["passed"]]
    assert not failed, f"{name}:{member}: {len(failed)} of {len(cases)} failed:\n" + "\n".join(
        failed
    )


def run_v2(page: Page, runner: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = page.evaluate(
        "async ([runner, text, roles]) => "
        "(await import('/tests/envelope_runner.js'))[runner](text, roles)",
        [runner, json.dumps(data), ROLES],
    )
    return results


@pytest.mark.parametrize(
    ("member", "runner"),
    [("valid", "runEnvelopeV2Valid"), ("failures", "runEnvelopeV2Failures")],
)
def test_every_version_2_document_case_passes(page: Page, member: str, runner: str) -> None:
    """vectors/envelope-v2.json: the valid document rebuilt byte for byte from its recorded
    randomness (its stream hashed by the vendored incremental SHA-256) and read; each
    failure refused at its stage with its error class, as Python refuses it."""
    data = json.loads((VECTORS / "envelope-v2.json").read_text("utf-8"))
    assert (
        data["identities"]
        == json.loads((VECTORS / "envelope.json").read_text("utf-8"))["identities"]
    )
    cases = [data["valid"]] if member == "valid" else data["failures"]
    results = run_v2(page, runner, data)
    assert [r["description"] for r in results] == [c["description"] for c in cases]
    failed = [f"{r['description']}: {r['detail']}" for r in results if not r["passed"]]
    assert not failed, f"envelope-v2.json:{member}: {len(failed)} failed:\n" + "\n".join(failed)


def test_the_version_2_runner_reports_failures(page: Page) -> None:
    """A wrong expectation or a wrong byte must come back as a failed case."""
    data = json.loads((VECTORS / "envelope-v2.json").read_text("utf-8"))
    stream = data["valid"]["stream"]
    data["valid"]["stream"] = stream[:-2] + ("00" if stream[-2:] != "00" else "01")
    assert data["failures"][0]["expect"] == "FieldError"
    data["failures"][0]["expect"] = "LengthError"
    last = data["failures"][-1]
    assert last["stage"] == "open"
    last["stage"] = "verify"
    (valid,) = run_v2(page, "runEnvelopeV2Valid", data)
    assert not valid["passed"] and "stream" in valid["detail"], valid
    results = run_v2(page, "runEnvelopeV2Failures", data)
    assert not results[0]["passed"] and not results[-1]["passed"]
    assert all(r["passed"] for r in results[1:-1])


def test_the_runner_reports_failures(page: Page) -> None:
    """A wrong expectation in a vector must come back as a failed case, never as a pass."""
    data = json.loads((VECTORS / "shares.json").read_text("utf-8"))
    data["decode"][0]["expect"] = "ChecksumError"  # really UnknownVersionError
    data["encode"][0]["binary"] = "00" + data["encode"][0]["binary"][2:]
    data["combine"][0]["secret"] = "00" * 24
    for runner in ("runSharesDecode", "runSharesEncode", "runSharesCombine"):
        results = run(page, runner, json.dumps(data))
        assert not results[0]["passed"], runner
        assert all(r["passed"] for r in results[1:]), runner


def test_the_examples_of_the_spec(page: Page) -> None:
    """The worked examples of spec/format-v1.md sections 2.1, 2.2, 3.1, 3.2 and 3.1's CRC."""
    js = page.evaluate(
        """async () => {
            const { fromHex, toHex, utf8 } = await import('/js/bytes.js');
            const gf256 = await import('/js/gf256.js');
            const shamir = await import('/js/shamir.js');
            const { Share, crc32 } = await import('/js/shares.js');
            const raw = shamir.split(fromHex('2a'), 3, 2, () => fromHex('53'));
            const splitId = fromHex('00112233445566778899aabbccddeeff');
            const shares = raw.map((r) => new Share(splitId, 2, r[1], r.subarray(0, 1)));
            return {
                products: [gf256.mul(0x57, 0x83), gf256.mul(0x53, 0xca), gf256.inv(0x53)],
                raw: raw.map(toHex),
                first: toHex(shares[0].toBytes()),
                texts: shares.map((share) => share.toText()),
                check: crc32(utf8('123456789')).toString(16),
            };
        }"""
    )
    assert js["products"] == [0xC1, 0x01, 0xCA]
    assert js["raw"] == ["7901", "8c02", "df03"]
    assert js["first"] == "0100112233445566778899aabbccddeeff02010000000179c7122da0"
    assert js["texts"] == [
        "securecomm-share-v1:AQARIjNEVWZ3iJmqu8zd7v8CAQAAAAF5xxItoA==",
        "securecomm-share-v1:AQARIjNEVWZ3iJmqu8zd7v8CAgAAAAGMjFFZnQ==",
        "securecomm-share-v1:AQARIjNEVWZ3iJmqu8zd7v8CAwAAAAHftW+Kdg==",
    ]
    assert js["check"] == "cbf43926"


# Classes that only the services and the CLI raise: a page never meets them.
_PYTHON_ONLY = {"SchemaError", "StorageError"}


def test_the_error_tree_mirrors_python(page: Page) -> None:
    """A vector's "expect" names one class in both languages (spec section 8): every
    class errors.py has, errors.js has too, under the same parent."""
    js: dict[str, str] = page.evaluate(
        """async () => {
            const errors = await import('/js/errors.js');
            return Object.fromEntries(
                Object.entries(errors)
                    .filter(([, value]) => typeof value === 'function')
                    .map(([name, cls]) => [name, Object.getPrototypeOf(cls).name]),
            );
        }"""
    )
    classes = [getattr(errors, name) for name in errors.__all__]
    python = {
        cls.__name__: cls.__mro__[1].__name__
        for cls in classes
        if isinstance(cls, type) and issubclass(cls, errors.SecureCommError)
    }
    python["SecureCommError"] = "Error"
    assert {k: v for k, v in python.items() if k not in _PYTHON_ONLY} == js
