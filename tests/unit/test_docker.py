"""The Docker files, checked without a Docker engine.

- ``docker-compose.yml`` is valid against the Compose Specification's JSON schema
  (the copy that check-jsonschema ships as ``vendor.compose-spec``), and what the
  schema cannot see holds too: named volumes, dependencies and build stages exist;
- every service that runs ``securecomm`` (and the Dockerfile's CMD) runs a command the
  README documents, with options the CLI's parser accepts;
- the ports, URLs and home are the ones ``securecomm.config`` uses by default;
- the README tells how to use them: ``docker-compose up web``, ``docker-compose run
  --rm tests``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from securecomm.cli import build_parser
from securecomm.config import DEFAULT_CUSTODIANS, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"

HOME = "/data"
VOLUME = "securecomm-data"
RELAY_SERVICE = "web"


def load_yaml(text: str) -> Any:
    # YAML 1.2 with anchors and merge keys, as Compose reads it.
    return YAML(typ="safe", pure=True).load(text)


def compose() -> dict[str, Any]:
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
    """``securecomm relay serve --host …`` -> ['securecomm', 'relay', 'serve']."""
    words = []
    for word in argv:
        if word.startswith("-"):
            break
        words.append(word)
    return words


# --- the compose file ---


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_what_compose_refuses(tmp_path: Path) -> None:
    # A misspelt key and a command word that is a number, not a string: both invalid.
    for body in (
        "services:\n  web:\n    image: securecomm:local\n    portz: ['5000']\n",
        "services:\n  web:\n    image: securecomm:local\n    command: [securecomm, 5000]\n",
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
        for dependency in service.get("depends_on", []):
            assert dependency in data["services"], f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in data["volumes"], f"{name} mounts undeclared volume {source}"
        build = service.get("build", {})
        assert build.get("context") == ".", name
        assert build.get("target") in stage_names, f"{name}: no stage {build.get('target')}"


def test_the_services_share_one_home_on_one_volume() -> None:
    for label, argv in securecomm_commands().items():
        assert parse(argv).home == HOME, label
    for name in securecomm_services():
        service = services()[name]
        assert service["volumes"] == [f"{VOLUME}:{HOME}"], name
        assert service["build"]["target"] == runtime_target(), name


# --- commands the README documents ---


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
    relay = [label for label, args in runs.items() if args.command == "relay"]
    assert sorted(relay) == ["Dockerfile CMD", f"service {RELAY_SERVICE}"]
    custodians = {
        label.removeprefix("service "): args.name
        for label, args in runs.items()
        if args.command == "custodian"
    }
    # Each custodian runs as the service of its own name, so that name is its address.
    assert custodians == {name: name for name in DEFAULT_CUSTODIANS}
    for args in runs.values():
        assert args.host == "0.0.0.0"  # reachable from the other containers


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
    readme = README.read_text("utf-8")
    for command in ("docker-compose up web", "docker-compose run --rm tests"):
        assert command in readme, f"the README does not mention `{command}`"


# --- ports and addresses: the config's defaults ---


def test_ports_match_the_config_defaults(tmp_path: Path) -> None:
    settings = defaults(tmp_path)
    web = services()[RELAY_SERVICE]
    assert parse(web["command"]).port == settings.server_port
    assert web["ports"] == [f"127.0.0.1:{settings.server_port}:{settings.server_port}"]
    assert parse(exec_form(last(stage(runtime_target()), "CMD"))).port == settings.server_port
    for custodian in settings.custodians:
        service = services()[custodian.name]
        assert parse(service["command"]).port == custodian.port, custodian.name
        assert service["expose"] == [str(custodian.port)], custodian.name
        assert "ports" not in service, f"{custodian.name} is published; only the relay is"


def test_dockerfile_exposes_the_default_ports(tmp_path: Path) -> None:
    settings = defaults(tmp_path)
    exposed = {int(port) for port in last(stage(runtime_target()), "EXPOSE").split()}
    assert exposed == {settings.server_port} | {c.port for c in settings.custodians}


def test_the_environment_points_clients_at_the_services(tmp_path: Path) -> None:
    """securecomm.config, given the compose environment, finds each service by its name."""
    settings = defaults(tmp_path)
    for name in securecomm_services():
        environment = services()[name]["environment"]
        seen = load_settings(tmp_path, env=environment)
        assert seen.server_url == f"http://{RELAY_SERVICE}:{settings.server_port}", name
        assert [c.url for c in seen.custodians] == [
            f"http://{c.name}:{c.port}" for c in settings.custodians
        ], name


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
    assert any(re.search(r"\bpip install (--\S+ )*\.(\s|$)", run) for run in runs), runs
    assert last(stage("test"), "USER") == user


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    # The test stage makes its own .venv; a host's copied over it would break it.
    ignored = set(DOCKERIGNORE.read_text("utf-8").split())
    assert {".venv", ".git", "securecomm-data"} <= ignored
