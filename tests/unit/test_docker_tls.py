"""``docker-compose.tls.yml``, laid over ``docker-compose.yml`` (``docker-compose -f
docker-compose.yml -f docker-compose.tls.yml up web``), checked without a Docker engine:
merged as Compose merges (a command replaced, mounts merged by their target), every
party serves HTTPS from its own certificate, mounted read-only into its own containers
only (the relay's: its replicas and its front, which serves HTTPS with it and checks the
replicas' against the CA); the network file carries the CA's certificate; the CA's key
is mounted nowhere; and nothing serves plain HTTP off loopback."""

from __future__ import annotations

from typing import Any

from tests.unit.test_docker import (
    FRONT,
    FRONT_CONFIG_TARGET,
    HOME,
    README,
    ROOT,
    check_compose_schema,
    front_directives,
    load_yaml,
    mounts,
    parse,
    parties,
    services,
    subcommand_words,
)

OVERLAY = ROOT / "docker-compose.tls.yml"


def overlay() -> dict[str, dict[str, Any]]:
    data = load_yaml(OVERLAY.read_text("utf-8"))
    assert isinstance(data, dict)
    result = data["services"]
    assert isinstance(result, dict)
    return result


def merged() -> dict[str, dict[str, Any]]:
    """The services as Compose sees them with both files: keys of the overlay replace the
    base's, except volumes (merged by target) and environment (merged by name)."""
    result = {name: dict(service) for name, service in services().items()}
    for name, laid in overlay().items():
        assert name in result, f"the overlay adds a service {name} the base does not have"
        service = result[name]
        for key, value in laid.items():
            if key == "volumes":
                by_target = {m.target: entry for m, entry in _entries(service)}
                by_target |= {m.target: entry for m, entry in _entries(laid)}
                service["volumes"] = list(by_target.values())
            elif key == "environment":
                service["environment"] = {**service.get("environment", {}), **value}
            else:
                service[key] = value
    return result


def _entries(service: dict[str, Any]) -> list[tuple[Any, Any]]:
    return list(zip(mounts(service), service.get("volumes", []), strict=True))


def test_the_overlay_is_valid_compose() -> None:
    result = check_compose_schema(OVERLAY)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_party_serves_https_from_its_own_certificate_only() -> None:
    everything = merged()
    for party in parties():
        own = {f"./tls/{party.name}.pem", f"./tls/{party.name}.key"}
        init = parse(everything[party.init]["command"])
        assert init.url.startswith("https://"), party.init
        assert (init.tls_cert, init.tls_key) == (
            f"/tls/{party.name}.pem",
            f"/tls/{party.name}.key",
        ), party.init
        for name in party.serves:
            serve = parse(everything[name]["command"])
            assert serve.home == HOME and not serve.insecure_http, name
        # The relay's containers: its replicas, and its front.
        containers = [party.init, *party.serves, *([FRONT] if party.is_relay else [])]
        for step in containers:
            binds = {m.source: m for m in mounts(everything[step]) if m.kind == "bind"}
            # (The CA's certificate is public: the network step and the front have it.)
            tls = {s for s in binds if s.startswith("./tls/") and s != "./tls/ca/ca.pem"}
            assert tls == own, f"{step} mounts {sorted(tls)}"
            for source in tls:
                assert binds[source].read_only and not binds[source].creates_host_path, step
        # The join step and everyone else's steps see none of this party's certificate.
        for other in everything:
            if other in containers:
                continue
            sources = {m.source for m in mounts(everything[other])}
            assert not own & sources, f"{other} mounts {party.name}'s certificate or key"


def test_the_network_file_carries_the_ca_and_its_key_is_mounted_nowhere() -> None:
    everything = merged()
    network = parse(everything["network"]["command"])
    assert network.tls_ca == "/tls/ca.pem"
    (ca,) = [m for m in mounts(everything["network"]) if m.target == "/tls/ca.pem"]
    assert ca.source == "./tls/ca/ca.pem" and ca.read_only
    for name, service in everything.items():
        for mount in mounts(service):
            assert not mount.source.endswith("ca.key"), f"{name} mounts the CA's key"
            assert mount.source not in {"./tls", "./tls/", "./tls/ca"}, name


def test_the_overlay_commands_are_ones_the_readme_documents() -> None:
    readme = README.read_text("utf-8")
    assert "docker-compose -f docker-compose.yml -f docker-compose.tls.yml up web" in readme
    for name, service in overlay().items():
        argv = service.get("command")
        if argv is None:
            continue
        assert callable(parse(argv).func), name
        assert " ".join(subcommand_words(argv)) in readme, name
        for option in (word for word in argv if word.startswith("--")):
            assert option in readme, f"{name}: the README does not document {option}"


def test_tls_material_stays_out_of_git_and_the_image() -> None:
    assert "tls/" in (ROOT / ".gitignore").read_text().split()
    assert "tls" in (ROOT / ".dockerignore").read_text().split()


def test_the_front_serves_https_and_checks_the_replicas_certificate() -> None:
    front = merged()[FRONT]
    binds = {m.target: m for m in mounts(front) if m.kind == "bind"}
    assert {target: m.source for target, m in binds.items()} == {
        FRONT_CONFIG_TARGET: "./docker/relay-front.tls.conf",
        "/tls/relay.pem": "./tls/relay.pem",
        "/tls/relay.key": "./tls/relay.key",
        "/tls/ca.pem": "./tls/ca/ca.pem",
    }
    assert all(m.read_only and not m.creates_host_path for m in binds.values())
    directives = front_directives((ROOT / "docker" / "relay-front.tls.conf").read_text())
    assert directives["listen"] == ["5000 ssl"]
    assert directives["ssl_certificate"] == ['"/tls/relay.pem"']
    assert directives["ssl_certificate_key"] == ['"/tls/relay.key"']
    assert directives["proxy_pass"] == ["https://securecomm_relay"]
    assert directives["proxy_ssl_verify"] == ["on"]
    assert directives["proxy_ssl_trusted_certificate"] == ['"/tls/ca.pem"']
    # The name the relay's certificate is issued for (README: --host web).
    assert directives["proxy_ssl_name"] == ["web"]
    assert "tls issue --ca tls/ca --name relay --host web" in README.read_text("utf-8")
