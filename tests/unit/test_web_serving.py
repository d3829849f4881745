"""The relay serves the web client; custodians let only the configured origin's pages call them."""

from __future__ import annotations

from pathlib import Path

import pytest

from securecomm.config import load_settings, origin_of
from securecomm.errors import ParameterError
from securecomm.identity import Identity
from securecomm.local.home import init_home

from ._services import custodian, relay, release_body, settings_for

ORIGIN = "http://127.0.0.1:5000"  # the default relay URL's origin
BOB = Identity.generate("bob")


def test_relay_serves_the_page_and_its_modules_with_a_strict_policy(tmp_path: Path) -> None:
    svc = relay(settings_for(tmp_path))
    page = svc.send("GET", "/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    # The custodians are the only other places the page may connect to.
    assert "connect-src 'self' http://127.0.0.1:5101 " in policy
    module = svc.send("GET", "/web/js/bytes.js")
    assert module.status_code == 200 and module.mimetype == "text/javascript"


@pytest.mark.parametrize(
    "path", ["/web/../relay/app.py", "/web/js/nope.js", "/web/index.py", "/web/%2e%2e/app.py"]
)
def test_relay_serves_nothing_but_the_web_files(tmp_path: Path, path: str) -> None:
    assert relay(settings_for(tmp_path)).send("GET", path).status_code == 404


def test_web_config_names_custodians_threshold_and_pinned_fingerprints(tmp_path: Path) -> None:
    report = init_home(tmp_path)
    svc = relay(load_settings(tmp_path / "relay", env={}))  # the relay's own home
    config = svc.send("GET", "/api/v1/web-config").json
    assert config["threshold"] == 3 and config["n"] == 5
    assert [c["name"] for c in config["custodians"]] == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
    ]
    alpha = config["custodians"][0]
    assert alpha["url"] == "http://127.0.0.1:5101"
    assert alpha["fingerprint"] == report.identities["alpha"].fingerprint_hex
    assert config["origins"] == ["http://127.0.0.1:5000"]


def test_the_relay_reads_its_own_home_not_a_client_s_pinned_keys(tmp_path: Path) -> None:
    report = init_home(tmp_path)
    own = tmp_path / "relay"
    # A client's pin store the relay must not depend on: gone, and unreadable if opened.
    (own / "known_keys.json").unlink()
    (own / "known_keys.json").mkdir()
    settings = load_settings(own, env={})
    config = relay(settings).send("GET", "/api/v1/web-config").json
    assert [c["fingerprint"] for c in config["custodians"]] == [
        report.identities[name].fingerprint_hex
        for name in ("alpha", "bravo", "charlie", "delta", "echo")
    ]
    # A relay given no network file knows no custodian keys (the page pins on first use).
    (own / "network.json").unlink()
    bare = relay(load_settings(own, env={})).send("GET", "/api/v1/web-config").json
    assert [c["fingerprint"] for c in bare["custodians"]] == [None] * 5


def test_custodian_preflight_allows_the_configured_origin(tmp_path: Path) -> None:
    svc = custodian(settings_for(tmp_path), "alpha")
    answer = svc.send(
        "OPTIONS",
        "/v1/deposits",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-digest, signature",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = answer.headers["Access-Control-Allow-Headers"].lower()
    for name in ("content-digest", "signature", "signature-input", "securecomm-identity"):
        assert name in allowed
    assert "Origin" in answer.headers["Vary"]


def test_custodian_refuses_pages_of_any_other_origin(tmp_path: Path) -> None:
    svc = custodian(settings_for(tmp_path), "alpha")
    for origin in ("http://evil.example", "http://localhost:5000", "null", "http://127.0.0.1:5001"):
        preflight = svc.send("OPTIONS", "/v1/deposits", headers={"Origin": origin})
        assert preflight.status_code == 403
        assert "Access-Control-Allow-Origin" not in preflight.headers
        # Even a request that skipped the preflight is refused before any view runs.
        attempt = svc.call(BOB, "POST", "/v1/releases", release_body("0" * 32))
        assert attempt.status_code == 404  # without an Origin: an ordinary refusal
        headers = svc.headers(BOB, "POST", "/v1/releases", release_body("0" * 32))
        headers["Origin"] = origin
        refused = svc.send("POST", "/v1/releases", release_body("0" * 32), headers=headers)
        assert refused.status_code == 403 and refused.json["code"] == "origin_not_allowed"


def test_custodian_answers_the_allowed_origin_with_cors_headers_on_errors_too(
    tmp_path: Path,
) -> None:
    svc = custodian(settings_for(tmp_path), "alpha")
    headers = svc.headers(BOB, "POST", "/v1/releases", release_body("0" * 32))
    headers["Origin"] = ORIGIN
    answer = svc.send("POST", "/v1/releases", release_body("0" * 32), headers=headers)
    assert answer.status_code == 404 and answer.json["code"] == "no_deposit"
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_web_origins_from_the_config_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "securecomm.toml").write_text(
        '[server]\nweb_origins = ["https://chat.example.org", "http://10.0.0.2:8080"]\n'
    )
    settings = load_settings(tmp_path, env={})
    assert settings.allowed_origins() == ("https://chat.example.org", "http://10.0.0.2:8080")
    env = {"SECURECOMM_WEB_ORIGINS": "https://a.example, https://b.example:8443"}
    assert load_settings(tmp_path, env=env).allowed_origins() == (
        "https://a.example",
        "https://b.example:8443",
    )
    assert load_settings(tmp_path / "none", env={}).allowed_origins() == (ORIGIN,)


@pytest.mark.parametrize(
    "bad", ["ftp://x.example", "https://x.example/path", "https://u@x.example", "x.example"]
)
def test_a_web_origin_that_is_not_an_origin_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ParameterError):
        load_settings(tmp_path, env={"SECURECOMM_WEB_ORIGINS": bad})


def test_origin_of_drops_default_ports_and_case() -> None:
    assert origin_of("HTTPS://Chat.Example.org:443/x") == "https://chat.example.org"
    assert origin_of("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"


def test_relay_takes_requests_from_its_own_pages_and_its_web_origins_only(
    tmp_path: Path,
) -> None:
    proxied = "https://chat.example.org"
    svc = relay(settings_for(tmp_path, web_origins=(proxied,)))
    for origin, status in [
        ("http://localhost", 200),  # the page it served itself: Origin equals its Host
        (proxied, 200),  # its page reached through a proxy
        ("http://evil.example", 403),
    ]:
        answer = svc.send(
            "GET", "/api/v1/web-config", headers={"Origin": origin, "Host": "localhost"}
        )
        assert answer.status_code == status, origin
    assert svc.send("GET", "/", headers={"Origin": "http://evil.example"}).status_code == 403
