"""The Docker files, checked without a Docker engine.

- ``docker-compose.yml`` is valid against the Compose Specification's JSON schema
  (the copy that check-jsonschema ships as ``vendor.compose-spec``), and what the
  schema cannot see holds too: named volumes, dependencies and build stages exist;
- it deploys the way ``docs/deployment.md`` does: each party (the relay, custodians
  alpha .. echo) initialises itself, the coordinator makes the network file from the
  cards, each party joins it and serves, each in its own service with its own named
  volume as its home; a custodian is given only its operator's ``.pub``, read-only; the
  one shared volume carries only cards and the network file, and no service that
  serves mounts it;
- the relay serves as two replicas from its one home, on one PostgreSQL database whose
  password is a secret only PostgreSQL and the replicas see, behind nginx on the relay's
  address, whose configuration is what ``tools/compose_front.py`` writes from
  securecomm's own front and which Debian's nginx accepts (``nginx -t``);
- the one-shot steps run in that order (``service_completed_successfully``), and run
  as compose would run them (each command given only its own mounts, twice, as a
  second ``up`` would) they leave every volume with only its own party's private key;
- every service that runs ``securecomm`` (and the Dockerfile's CMD) runs a command the
  README documents, with options the CLI's parser accepts;
- the ports are the ones ``securecomm.config`` uses by default;
- the README tells how to use them.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML
from sqlalchemy.engine import make_url

from securecomm.cli import build_parser, main
from securecomm.config import (
    DEFAULT_CUSTODIANS,
    DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_RELAY_PORT,
    Settings,
    load_settings,
)
from securecomm.local.front import find_nginx
from securecomm.tls import make_ca

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"

HOME = "/data"  # every party's home, in its own container
EXCHANGE = "/exchange"  # where the parties hand on cards and the network file
EXCHANGE_VOLUME = "exchange"
OPERATOR_PUB = "/operator.pub"  # a custodian's operator's public key, in its init step
RELAY = "relay"
RELAY_SERVICE = "web"  # the relay's address on compose's network: its front (nginx)
FRONT = RELAY_SERVICE
RELAY_REPLICAS = ("relay-1", "relay-2")  # the relay's serving services, behind the front
DATABASE = "postgres"  # the relay's database server
DATABASE_VOLUME = "postgres-data"
DATABASE_SECRET = "postgres-password"
SECRET_FILE = f"/run/secrets/{DATABASE_SECRET}"
FRONT_CONFIG_TARGET = "/etc/nginx/conf.d/default.conf"
FRONT_CONFIG = "./docker/relay-front.conf"
NETWORK_SERVICE = "network"
PAGE_ORIGIN = "http://127.0.0.1:5000"  # where a browser on the host opens the page
COMPLETED = "service_completed_successfully"


def load_yaml(text: str) -> Any:
    # YAML 1.2 with anchors and merge keys, as Compose reads it.
    return YAML(typ="safe", pure=True).load(text)


@functools.cache
def compose() -> dict[str, Any]:
    """The compose file as read once (nothing changes it)."""
    data = load_yaml(COMPOSE.read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result = compose()["services"]
    assert isinstance(result, dict)
    return result


def defaults(home: Path) -> Settings:
    """The embedded defaults: an empty home, no environment."""
    return load_settings(home, env={})


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    schema = ["--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- the parties and their steps ---


@dataclass(frozen=True)
class Party:
    name: str
    init: str  # the one-shot service that makes its identity and card
    join: str  # the one-shot service that joins the network file
    serves: tuple[str, ...]  # the services that serve from its home

    @property
    def steps(self) -> tuple[str, ...]:
        return (self.init, self.join, *self.serves)

    @property
    def is_relay(self) -> bool:
        return self.name == RELAY


def parties() -> list[Party]:
    """The relay (its replicas, behind the front named ``web``, its address) and the
    default custodians, each served under its own name, which is then its address on
    compose's network."""
    relay = Party(RELAY, f"{RELAY}-init", f"{RELAY}-join", RELAY_REPLICAS)
    return [relay] + [Party(c, f"{c}-init", f"{c}-join", (c,)) for c in DEFAULT_CUSTODIANS]


def one_shot_services() -> list[str]:
    return [step for p in parties() for step in (p.init, p.join)] + [NETWORK_SERVICE]


def serve_services() -> list[str]:
    return [serve for p in parties() for serve in p.serves]


# --- mounts, in either of compose's syntaxes ---


@dataclass(frozen=True)
class Mount:
    kind: str  # "volume" or "bind"
    source: str  # the named volume, or the host path of a bind ("" for an anonymous volume)
    target: str
    read_only: bool
    creates_host_path: bool  # a bind whose missing source compose would make a directory


def mounts(service: dict[str, Any]) -> list[Mount]:
    result = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) == 1:
                result.append(Mount("volume", "", parts[0], False, False))
                continue
            source, target = parts[0], parts[1]
            options = parts[2].split(",") if len(parts) > 2 else []
            bind = source.startswith((".", "/", "~"))
            # The short syntax makes a missing bind source a directory on the host.
            result.append(
                Mount("bind" if bind else "volume", source, target, "ro" in options, bind)
            )
        else:
            assert isinstance(entry, dict), entry
            creates = bool(entry.get("bind", {}).get("create_host_path", False))
            result.append(
                Mount(
                    entry["type"],
                    entry.get("source", ""),
                    entry["target"],
                    bool(entry.get("read_only", False)),
                    creates,
                )
            )
    return result


def mount_at(service: str, target: str) -> Mount:
    found = [m for m in mounts(services()[service]) if m.target == target]
    assert len(found) == 1, f"{service}: {len(found)} mounts at {target}"
    return found[0]


def home_volume(party: Party) -> str:
    found = {mount_at(serve, HOME) for serve in party.serves}
    assert len(found) == 1, f"{party.name}'s services mount different homes: {found}"
    (mount,) = found
    assert mount.kind == "volume" and mount.source, f"{party.serves}: {HOME} is no named volume"
    return mount.source


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}; the short (list) form means service_started."""
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {name: spec["condition"] for name, spec in depends.items()}


# --- the Dockerfile, read as Docker reads it: continuations joined, comments dropped ---


def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(stage name, [(INSTRUCTION, arguments)]) for each FROM, in order."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append((name, []))
        assert stages, f"instruction before the first FROM: {line}"
        stages[-1][1].append((instruction, arguments.strip()))
    return stages


def stage(name: str) -> list[tuple[str, str]]:
    for stage_name, instructions in dockerfile_stages():
        if stage_name == name:
            return instructions
    raise AssertionError(f"the Dockerfile has no stage {name!r}")


def last(instructions: list[tuple[str, str]], wanted: str) -> str:
    found = [arguments for instruction, arguments in instructions if instruction == wanted]
    assert found, f"no {wanted} in the stage"
    return found[-1]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(word, str) for word in value), arguments
    return value


def runtime_target() -> str:
    """The stage that ``docker build .`` builds: the last one."""
    return dockerfile_stages()[-1][0]


# --- securecomm commands, from compose and from the Dockerfile ---


def securecomm_services() -> list[str]:
    """The compose services whose command runs securecomm."""
    return [
        name
        for name, service in services().items()
        if service.get("command") and service["command"][0] == "securecomm"
    ]


def securecomm_commands() -> dict[str, list[str]]:
    """Every command that runs securecomm: each such compose service's, and the CMD."""
    commands = {
        f"service {name}": list(services()[name]["command"]) for name in securecomm_services()
    }
    commands["Dockerfile CMD"] = exec_form(last(stage(runtime_target()), "CMD"))
    return commands


def parse(argv: list[str]) -> Any:
    assert argv[0] == "securecomm"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"securecomm refuses {argv[1:]} (exit {exc.code}); see its --help")


def subcommand_words(argv: list[str]) -> list[str]:
    """The words that choose the command, as the parser reads them:
    ``securecomm relay serve --host …`` -> ['securecomm', 'relay', 'serve'];
    ``securecomm join /exchange/network.json …`` -> ['securecomm', 'join']."""
    parser = build_parser()
    words = [argv[0]]
    for word in argv[1:]:
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
            None,
        )
        if not choices or word not in choices:
            break
        words.append(word)
        parser = choices[word]
    return words


def command_of(service: str) -> list[str]:
    return subcommand_words(services()[service]["command"])[1:]


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def docker_section() -> str:
    readme = README.read_text("utf-8")
    match = re.search(r"^## With Docker\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    assert match, "the README has no '## With Docker' section"
    return match.group(1)


# --- the compose file ---


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_what_compose_refuses(tmp_path: Path) -> None:
    # A misspelt key, a command word that is a number, not a string, and a dependency
    # condition compose does not know: all invalid.
    for body in (
        "services:\n  web:\n    image: securecomm:local\n    portz: ['5000']\n",
        "services:\n  web:\n    image: securecomm:local\n    command: [securecomm, 5000]\n",
        "services:\n  web:\n    image: securecomm:local\n"
        "    depends_on: {network: {condition: service_done}}\n",
    ):
        path = tmp_path / "docker-compose.yml"
        path.write_text(body, "utf-8")
        result = check_compose_schema(path)
        assert result.returncode == 1, (body, result.stdout, result.stderr)
        assert "services.web" in result.stdout


def test_compose_references_resolve() -> None:
    """What Compose checks beyond the schema: volumes, dependencies, build targets."""
    data = compose()
    stage_names = {name for name, _ in dockerfile_stages()}
    for name, service in data["services"].items():
        for dependency in dependencies(service):
            assert dependency in data["services"], f"{name} depends on unknown {dependency}"
        for mount in mounts(service):
            if mount.kind == "volume":
                assert mount.source in data["volumes"], f"{name} mounts undeclared {mount}"
        for secret in service.get("secrets", []):
            assert secret in data["secrets"], f"{name} uses undeclared secret {secret}"
        if name in (FRONT, DATABASE):
            # Official images, at a version chosen, not whatever `latest` is that day.
            image = service["image"]
            assert re.fullmatch(r"[a-z]+:[0-9][0-9.]*", image), f"{name}: {image}"
            assert "build" not in service, name
            continue
        build = service.get("build", {})
        assert build.get("context") == ".", name
        assert build.get("target") in stage_names, f"{name}: no stage {build.get('target')}"


def test_every_party_has_its_steps_and_nothing_else_runs() -> None:
    expected = {step for p in parties() for step in p.steps} | {NETWORK_SERVICE}
    assert set(securecomm_services()) == expected
    for name in expected:
        assert services()[name]["build"]["target"] == runtime_target(), name
        assert services()[name]["image"] == services()[NETWORK_SERVICE]["image"], name
    assert set(services()) == expected | {"tests", FRONT, DATABASE}


def test_each_party_initialises_itself_in_its_own_home(tmp_path: Path) -> None:
    settings = defaults(tmp_path)
    ports = {c.name: c.port for c in settings.custodians}
    for party in parties():
        argv = services()[party.init]["command"]
        args = parse(argv)
        assert args.home == HOME, party.init
        assert args.force, f"{party.init}: a second `up` must re-issue the card (--force)"
        assert args.card == f"{EXCHANGE}/{party.name}.card.json", party.init
        if party.is_relay:
            assert command_of(party.init) == ["relay", "init"]
            assert args.url == f"http://{RELAY_SERVICE}:{settings.server_port}"
        else:
            assert command_of(party.init) == ["custodian", "init"], party.init
            assert args.name == party.name
            # Its URL names its own service, where the others reach it.
            assert args.url == f"http://{party.serves[0]}:{ports[party.name]}"
            assert args.operator == OPERATOR_PUB


def test_the_coordinator_makes_the_network_file_from_the_cards(tmp_path: Path) -> None:
    settings = defaults(tmp_path)
    args = parse(services()[NETWORK_SERVICE]["command"])
    assert command_of(NETWORK_SERVICE) == ["network", "create"]
    cards = {p.name: parse(services()[p.init]["command"]).card for p in parties()}
    assert args.relay == cards[RELAY]
    # In share order: the custodians' order is the order of the shares.
    assert args.custodian == [cards[name] for name in DEFAULT_CUSTODIANS]
    assert args.threshold == settings.threshold
    assert args.out == f"{EXCHANGE}/network.json"
    assert args.force
    for party in parties():
        args_join = parse(services()[party.join]["command"])
        assert command_of(party.join) == ["join"], party.join
        assert args_join.network == args.out, party.join
        assert args_join.home == HOME, party.join
        assert args_join.fingerprint is None and not args_join.accept, party.join


@pytest.mark.parametrize("label", sorted(securecomm_commands()))
def test_each_command_is_one_the_readme_documents(label: str) -> None:
    argv = securecomm_commands()[label]
    args = parse(argv)
    assert callable(args.func), label
    readme = README.read_text("utf-8")
    command = " ".join(subcommand_words(argv))
    assert command in readme, f"{label}: the README does not document `{command}`"
    for option in (word for word in argv if word.startswith("--")):
        documented = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", readme)
        assert documented, f"{label}: the README does not document {option}"


def test_the_relay_and_every_default_custodian_run() -> None:
    runs = {label: parse(argv) for label, argv in securecomm_commands().items()}
    serving = {
        label: args
        for label, args in runs.items()
        if subcommand_words(securecomm_commands()[label])[-1] == "serve"
    }
    relay = [label for label, args in serving.items() if args.command == "relay"]
    assert sorted(relay) == ["Dockerfile CMD", *(f"service {r}" for r in RELAY_REPLICAS)]
    custodians = sorted(
        label.removeprefix("service ")
        for label, args in serving.items()
        if args.command == "custodian"
    )
    assert custodians == sorted(DEFAULT_CUSTODIANS)
    for label, args in serving.items():
        assert args.home == HOME, label
        assert args.host == "0.0.0.0", label  # reachable from the other containers
        # Plain HTTP off loopback is refused without it: Compose's network is private.
        assert args.insecure_http, label
        if args.command == "custodian":
            # Its own home says which custodian it is: `custodian init` wrote [custodian].
            assert args.name is None, label


# --- homes and volumes: no party's keys where another party runs ---


def test_each_party_mounts_its_own_home_and_only_what_each_step_needs() -> None:
    for party in parties():
        home = home_volume(party)
        assert home != EXCHANGE_VOLUME, party.name
        pub = Mount("bind", f"./operators/{party.name}-operator.pub", OPERATOR_PUB, True, False)
        own_home = Mount("volume", home, HOME, False, False)
        exchange = Mount("volume", EXCHANGE_VOLUME, EXCHANGE, False, False)
        exchange_ro = Mount("volume", EXCHANGE_VOLUME, EXCHANGE, True, False)
        init = {own_home, exchange} | (set() if party.is_relay else {pub})
        assert set(mounts(services()[party.init])) == init, party.init
        # Joining reads the network file; it writes only in its own home.
        assert set(mounts(services()[party.join])) == {own_home, exchange_ro}, party.join
        for serve in party.serves:
            assert set(mounts(services()[serve])) == {own_home}, serve
        for step in party.steps:
            assert len(services()[step]["volumes"]) == len(mounts(services()[step])), step
    # The coordinator has no home: it reads the cards and writes the network file.
    assert mounts(services()[NETWORK_SERVICE]) == [
        Mount("volume", EXCHANGE_VOLUME, EXCHANGE, False, False)
    ]


def test_no_two_parties_share_a_home_and_no_other_service_mounts_one() -> None:
    homes = {party.name: home_volume(party) for party in parties()}
    assert len(set(homes.values())) == len(homes), homes
    assert set(compose()["volumes"]) == set(homes.values()) | {EXCHANGE_VOLUME, DATABASE_VOLUME}
    for party in parties():
        users = {
            name
            for name, service in services().items()
            if any(m.kind == "volume" and m.source == homes[party.name] for m in mounts(service))
        }
        assert users == set(party.steps), f"{homes[party.name]} is mounted by {users}"


def test_no_service_mounts_an_operators_directory_or_a_private_key() -> None:
    operators = {f"./operators/{name}-operator.pub" for name in DEFAULT_CUSTODIANS}
    for name, service in services().items():
        for mount in mounts(service):
            assert mount.source, f"{name}: an anonymous volume at {mount.target}"
            if mount.kind != "bind":
                continue
            # Read-only, and never made into an empty directory if it is missing.
            assert mount.read_only, f"{name}: {mount.source} is writable"
            assert not mount.creates_host_path, f"{name}: {mount.source} may become a directory"
            if name == FRONT:  # its configuration, and nothing else
                assert (mount.source, mount.target) == (FRONT_CONFIG, FRONT_CONFIG_TARGET)
                continue
            # One operator's public key, never the directory that also holds the .key files.
            assert mount.source in operators, f"{name} mounts {mount.source}"
            assert not mount.source.endswith(".key"), name
            assert name == f"{mount.source.split('/')[-1].removesuffix('-operator.pub')}-init"


def test_the_exchange_is_never_mounted_where_a_party_serves() -> None:
    for name, service in services().items():
        exposed = "ports" in service or "expose" in service
        if name in serve_services() or exposed:
            assert all(m.source != EXCHANGE_VOLUME for m in mounts(service)), name
    users = {
        name
        for name, service in services().items()
        if any(m.source == EXCHANGE_VOLUME for m in mounts(service))
    }
    assert users == set(one_shot_services())


# --- the order: init -> network -> join -> serve ---


def test_the_steps_run_in_order() -> None:
    network = dependencies(services()[NETWORK_SERVICE])
    assert network == {p.init: COMPLETED for p in parties()}
    for party in parties():
        assert dependencies(services()[party.init]) == {}, party.init
        assert dependencies(services()[party.join]) == {NETWORK_SERVICE: COMPLETED}, party.join
        for serve in party.serves:
            depends = dependencies(services()[serve])
            assert depends[party.join] == COMPLETED, serve
            others = {name: cond for name, cond in depends.items() if name != party.join}
            if not party.is_relay:
                assert others == {}, serve
        if party.is_relay:
            first, second = (dependencies(services()[r]) for r in RELAY_REPLICAS)
            # The relay's page needs the custodians up, and its database must answer.
            assert first == {
                party.join: COMPLETED,
                DATABASE: "service_healthy",
                **dict.fromkeys(DEFAULT_CUSTODIANS, "service_started"),
            }
            # The second starts once the first answers: replicas starting together on a
            # new database would race to make its schema.
            assert second == {
                party.join: COMPLETED,
                DATABASE: "service_healthy",
                RELAY_REPLICAS[0]: "service_healthy",
            }
    for name in (DATABASE, RELAY_REPLICAS[0]):
        assert services()[name]["healthcheck"]["test"][0] == "CMD", name
    # The front starts once the replicas answer (it resolves their names then).
    assert dependencies(services()[FRONT]) == dict.fromkeys(RELAY_REPLICAS, "service_healthy")
    # `up web` starts every step: all are among web's dependencies, transitively.
    needed: set[str] = set()
    pending = [RELAY_SERVICE]
    while pending:
        for dependency in dependencies(services()[pending.pop()]):
            if dependency not in needed:
                needed.add(dependency)
                pending.append(dependency)
    assert needed == set(securecomm_services()) | {DATABASE}


def test_one_shot_steps_run_once_and_services_restart() -> None:
    for name in one_shot_services():
        # Restarted on exit, a step would run forever and `completed` never come.
        assert services()[name].get("restart", "no") == "no", name
    for name in [*serve_services(), FRONT, DATABASE]:
        assert services()[name]["restart"] == "unless-stopped", name


def topological_order(names: list[str]) -> list[str]:
    order: list[str] = []
    remaining = list(names)
    while remaining:
        ready = [
            n
            for n in remaining
            if all(d in order for d in dependencies(services()[n]) if d in names)
        ]
        assert ready, f"a dependency cycle among {remaining}"
        order.extend(ready)
        remaining = [n for n in remaining if n not in ready]
    return order


def in_container(argv: list[str], service: str, volumes: Path, project: Path) -> list[str]:
    """``argv`` with each path under one of the service's mounts made the host's path that
    the mount stands for; every path it names must be on a mount, or it would be lost."""
    places = {}
    for mount in mounts(services()[service]):
        if mount.kind == "volume":
            places[mount.target] = volumes / mount.source
        else:
            places[mount.target] = project / mount.source
    result = []
    for word in argv:
        if word.startswith("/"):
            target = next((t for t in places if word == t or word.startswith(t + "/")), None)
            assert target is not None, f"{service}: {word} is on none of its mounts"
            word = str(places[target]) + word.removeprefix(target)
        result.append(word)
    return result


def private_keys(directory: Path) -> dict[str, str]:
    """{path under directory: the identity it is the private key of}, for every file
    that holds one."""
    found = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            if "PRIVATE KEY" in text:
                header = re.match(r"securecomm-identity: (\S+)", text)
                found[path.relative_to(directory).as_posix()] = header.group(1) if header else ""
    return found


def test_the_steps_run_as_compose_runs_them(tmp_path: Path) -> None:
    """Each one-shot step, in dependency order, given only its own mounts (a directory
    for each named volume, the project's ./operators/*.pub for the binds), twice, as a
    second ``up`` runs them again; then each home is what its service needs, and holds
    only its own party's private key."""
    project, volumes = tmp_path / "project", tmp_path / "volumes"
    for name in [*compose()["volumes"]]:
        (volumes / name).mkdir(parents=True)
    for custodian in DEFAULT_CUSTODIANS:
        # What the operators do first, outside Docker.
        main(["keygen", f"{custodian}-operator", "--out", str(project / "operators")])
    order = topological_order(one_shot_services())

    def run_steps() -> None:
        for name in order:
            argv = in_container(services()[name]["command"], name, volumes, project)
            try:
                main(argv[1:])
            except SystemExit as exc:
                pytest.fail(f"{name}: `{' '.join(argv)}` exits {exc.code}")

    run_steps()
    first = {p: p.read_bytes() for p in sorted((volumes / EXCHANGE_VOLUME).iterdir())}
    run_steps()
    again = {p: p.read_bytes() for p in sorted((volumes / EXCHANGE_VOLUME).iterdir())}
    assert again == first, "a second `up` changes the cards or the network file"
    assert sorted(p.name for p in first) == sorted(
        [f"{p.name}.card.json" for p in parties()] + ["network.json"]
    )

    assert private_keys(volumes / EXCHANGE_VOLUME) == {}
    network_file = volumes / EXCHANGE_VOLUME / "network.json"
    expected = defaults(tmp_path)
    for party in parties():
        home = volumes / home_volume(party)
        assert list(private_keys(home).values()) == [party.name], party.name
        serve = services()[party.serves[0]]
        settings = load_settings(home, env=serve.get("environment", {}))
        assert (home / "network.json").read_bytes() == first[network_file]
        # Every service finds the others by their service names, from the network file.
        assert settings.server_url == f"http://{RELAY_SERVICE}:{settings.server_port}"
        assert [c.url for c in settings.custodians] == [
            f"http://{c.name}:{c.port}" for c in expected.custodians
        ]
        # The page a host's browser opens at the relay's published port may call them.
        assert settings.allowed_origins() == (PAGE_ORIGIN,), party.name
        if party.is_relay:
            assert settings.server_port == expected.server_port
            # On PostgreSQL, with the password from the secret put into the URL.
            url = make_url(settings.relay_database_url or "")
            assert (url.get_backend_name(), url.host) == ("postgresql", DATABASE)
            assert url.password is None
            assert settings.relay_database_password_file == Path(SECRET_FILE)
        else:
            assert settings.own_custodian is not None
            assert settings.own_custodian.name == party.name
            assert services()[party.serves[0]]["expose"] == [str(settings.own_custodian.port)]
            # Its own SQLite database in its own home, never the relay's server.
            database = settings.custodian_database(party.name)
            assert database.startswith(f"sqlite:///{home}/"), database


def test_tests_service_runs_the_readme_test_command() -> None:
    tests = services()["tests"]
    assert tests["command"] == ["make", "test"]
    assert exec_form(last(stage(tests["build"]["target"]), "CMD")) == ["make", "test"]
    assert "make test" in README.read_text("utf-8")
    # It starts its own services: it needs none of the others, none of their
    # settings (the suite reads the environment) and no published port.
    for key in ("depends_on", "environment", "ports", "volumes"):
        assert key not in tests, key
    # Not started by a plain `docker-compose up`, only when asked for.
    assert tests["profiles"] == ["test"]


def test_readme_says_how_to_run_them() -> None:
    section = docker_section()
    for text in (
        "docker-compose up web",
        "docker-compose run --rm tests",
        "docker-compose down -v",
        "securecomm keygen",
        "--out operators",
        "SECURECOMM_WEB_ORIGINS",
        "secrets/postgres-password",
        "tools/compose_front.py",
        FRONT_CONFIG.removeprefix("./"),
    ):
        assert text in section, f"the README's Docker section does not mention `{text}`"
    # What each volume holds and what each step is, named for the relay, the coordinator
    # and the first and last custodians (the others as `alpha` ... `echo`).
    named = {party.name: party for party in parties()}
    shown = [named[RELAY], named[DEFAULT_CUSTODIANS[0]], named[DEFAULT_CUSTODIANS[-1]]]
    names = [NETWORK_SERVICE, EXCHANGE_VOLUME, FRONT, DATABASE, DATABASE_VOLUME]
    names += [name for party in shown for name in (*party.steps, home_volume(party))]
    for name in names:
        assert f"`{name}`" in section, f"the README's Docker section does not name `{name}`"


# --- ports: the config's defaults ---


def test_ports_match_the_config_defaults(tmp_path: Path) -> None:
    settings = defaults(tmp_path)
    web = services()[RELAY_SERVICE]
    relay_url = parse(services()[f"{RELAY}-init"]["command"]).url
    assert port_of(relay_url) == settings.server_port
    # The front listens on the relay's port and alone publishes it; the replicas listen
    # on it too, reached by the front only.
    assert web["ports"] == [f"127.0.0.1:{settings.server_port}:{settings.server_port}"]
    assert front_directives(front_config())["listen"] == [str(settings.server_port)]
    for replica in RELAY_REPLICAS:
        service = services()[replica]
        assert parse(service["command"]).port in (None, settings.server_port), replica
        assert service["expose"] == [str(settings.server_port)], replica
        assert "ports" not in service, replica
    assert "ports" not in services()[DATABASE]
    assert PAGE_ORIGIN == f"http://127.0.0.1:{settings.server_port}"
    assert parse(exec_form(last(stage(runtime_target()), "CMD"))).port == settings.server_port
    for custodian in settings.custodians:
        service = services()[custodian.name]
        url = parse(services()[f"{custodian.name}-init"]["command"]).url
        assert port_of(url) == custodian.port, custodian.name
        assert parse(service["command"]).port in (None, custodian.port), custodian.name
        assert service["expose"] == [str(custodian.port)], custodian.name
        assert "ports" not in service, f"{custodian.name} is published; only the relay is"
    for name in one_shot_services():
        assert "ports" not in services()[name] and "expose" not in services()[name], name


def test_dockerfile_exposes_the_default_ports(tmp_path: Path) -> None:
    settings = defaults(tmp_path)
    exposed = {int(port) for port in last(stage(runtime_target()), "EXPOSE").split()}
    assert exposed == {settings.server_port} | {c.port for c in settings.custodians}


# --- the image ---


def test_image_runs_as_a_user_with_its_home_on_a_volume() -> None:
    stages = dockerfile_stages()
    assert stages[0][1][0] == ("FROM", "python:3.11-slim AS base")
    runtime = stage(runtime_target())
    user = last(runtime, "USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert f"SECURECOMM_HOME={HOME}" in last(runtime, "ENV")
    assert last(runtime, "VOLUME") == HOME
    runs = [arguments for instruction, arguments in runtime if instruction == "RUN"]
    # With the PostgreSQL driver: compose's relay keeps its database there.
    installs = r"\bpip install (--\S+ )*'\.\[postgres\]'(\s|$)"
    assert any(re.search(installs, run) for run in runs), runs
    assert last(stage("test"), "USER") == user


def test_the_image_gives_the_user_each_volume_mount_point() -> None:
    # A new named volume takes the owner of the image's directory it is mounted on: one
    # the image does not make would be root's, and the steps could not write there.
    user = last(stage(runtime_target()), "USER")
    runs = " && ".join(
        arguments for instruction, arguments in stage("base") if instruction == "RUN"
    )
    ours = [s for s in services().values() if "build" in s]
    targets = {m.target for s in ours for m in mounts(s) if m.kind == "volume"}
    assert targets == {HOME, EXCHANGE}
    for target in targets:
        assert re.search(rf"\bmkdir [^&]*{re.escape(target)}(\s|$)", runs), target
        assert re.search(rf"\bchown {re.escape(user)} [^&]*{re.escape(target)}(\s|$)", runs)


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    # The test stage makes its own .venv; a host's copied over it would break it. It
    # copies the tree, so the operators' keys made for compose must stay out of it.
    ignored = set(DOCKERIGNORE.read_text("utf-8").split())
    assert {".venv", ".git", "securecomm-data", "operators", "secrets"} <= ignored
    # The database's password stays out of git too.
    assert "secrets/" in (ROOT / ".gitignore").read_text("utf-8").split()


# --- the relay's replicas, their database and their front ---


def front_config(name: str = FRONT_CONFIG) -> str:
    return (ROOT / name).read_text("utf-8")


def front_directives(text: str) -> dict[str, list[str]]:
    """Each directive of an nginx configuration (comments dropped), with its arguments as
    one string, in order; blocks are flattened."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().rstrip("{").strip()
        if not line or line == "}":
            continue
        name, _, value = line.rstrip(";").partition(" ")
        found.setdefault(name, []).append(value.strip())
    return found


def test_the_relay_serves_as_two_replicas_on_postgresql_behind_its_front() -> None:
    replicas = [services()[name] for name in RELAY_REPLICAS]
    assert replicas[0]["command"] == replicas[1]["command"]
    assert replicas[0]["environment"] == replicas[1]["environment"]
    environment = replicas[0]["environment"]
    url = make_url(environment["SECURECOMM_RELAY_DATABASE_URL"])
    assert (url.get_backend_name(), url.host, url.port) == ("postgresql", DATABASE, 5432)
    assert url.password is None  # in the secret, never in the environment
    assert environment["SECURECOMM_RELAY_DATABASE_PASSWORD_FILE"] == SECRET_FILE
    database = services()[DATABASE]
    assert database["environment"] == {
        "POSTGRES_USER": url.username,
        "POSTGRES_DB": url.database,
        "POSTGRES_PASSWORD_FILE": SECRET_FILE,
    }
    assert mounts(database) == [
        Mount("volume", DATABASE_VOLUME, "/var/lib/postgresql/data", False, False)
    ]
    assert database["expose"] == ["5432"]
    # The front: its configuration, and the replicas it names, by their service names.
    assert mount_at(FRONT, FRONT_CONFIG_TARGET).source == FRONT_CONFIG
    directives = front_directives(front_config())
    servers = [value.split()[0] for value in directives["server"] if value]  # not `server {`
    assert servers == [f"{name}:{DEFAULT_RELAY_PORT}" for name in RELAY_REPLICAS]
    assert directives["proxy_pass"] == ["http://securecomm_relay"]
    assert directives["proxy_next_upstream"] == ["error timeout"]
    assert directives["client_max_body_size"] == [str(DEFAULT_MAX_ENVELOPE_BYTES)]


def test_the_database_password_is_a_secret_only_postgres_and_the_relay_see() -> None:
    assert compose()["secrets"] == {DATABASE_SECRET: {"file": f"./secrets/{DATABASE_SECRET}"}}
    users = {name for name, service in services().items() if service.get("secrets")}
    assert users == {DATABASE, *RELAY_REPLICAS}
    for name in users:
        assert services()[name]["secrets"] == [DATABASE_SECRET], name
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), f"{name}: {key}"
            assert not re.search(r"://[^/@]*:[^/@]*@", str(value)), f"{name}: {key} has one"


@pytest.mark.parametrize("name", [FRONT_CONFIG, "./docker/relay-front.tls.conf"])
def test_the_front_configuration_is_securecomm_s_own_and_nginx_accepts_it(
    name: str, tmp_path: Path
) -> None:
    from tools.compose_front import configs

    written = {f"./{path.relative_to(ROOT)}": text for path, text in configs().items()}
    assert front_config(name) == written[name], (
        f"{name} is not what tools/compose_front.py writes: run it"
    )
    # nginx checks it inside an http block as the official image includes it, with the
    # replicas' names and the mounted files made local (nothing here resolves `relay-1`).
    text = front_config(name)
    for replica in RELAY_REPLICAS:
        text = text.replace(f"{replica}:", "127.0.0.1:")
    if "ssl_certificate" in text:
        authority = make_ca("test CA")
        cert, key = authority.issue("relay", ["web", "localhost"]).write(tmp_path / "tls")
        (tmp_path / "ca.pem").write_bytes(authority.pem)
        for mounted, local in (
            ("/tls/relay.pem", cert),
            ("/tls/relay.key", key),
            ("/tls/ca.pem", tmp_path / "ca.pem"),
        ):
            assert f'"{mounted}"' in text, mounted
            text = text.replace(f'"{mounted}"', f'"{local}"')
    (tmp_path / "default.conf").write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f'pid "{tmp_path}/nginx.pid";\nerror_log stderr;\nevents {{}}\n'
        f'http {{\n    access_log off;\n    client_body_temp_path "{tmp_path}/body";\n'
        f'    proxy_temp_path "{tmp_path}/proxy";\n    include "{tmp_path}/default.conf";\n}}\n'
    )
    checked = subprocess.run(
        [find_nginx(), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
