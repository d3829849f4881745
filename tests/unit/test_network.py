"""Cards and the network file (spec §14): what a party says of itself, checked before use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from securecomm import canonical, errors
from securecomm.cli import build_parser, main
from securecomm.identity import Identity, load_or_create
from securecomm.network import Card, Network

RELAY = Identity.generate("relay")
CUSTODIANS = [Identity.generate(name) for name in ("alpha", "bravo", "charlie")]
OPERATORS = [Identity.generate(f"{c.name}-operator") for c in CUSTODIANS]


def relay_card(scheme: str = "http") -> Card:
    return Card.issue(RELAY, "relay", f"{scheme}://127.0.0.2:5000")


def custodian_cards(scheme: str = "http") -> tuple[Card, ...]:
    return tuple(
        Card.issue(c, "custodian", f"{scheme}://127.0.0.{3 + i}:5101", o.public)
        for i, (c, o) in enumerate(zip(CUSTODIANS, OPERATORS, strict=True))
    )


def test_a_card_round_trips_and_checks_its_own_signature() -> None:
    card = custodian_cards()[0]
    again = Card.from_bytes(card.to_bytes())
    assert again == card
    assert again.operator is not None and again.operator.name == "alpha-operator"


@pytest.mark.parametrize(
    ("field", "value"),
    [("url", "http://127.0.0.9:5101"), ("role", "relay"), ("v", 2)],
)
def test_a_card_altered_after_signing_is_refused(field: str, value: object) -> None:
    document = custodian_cards()[0].to_json() | {field: value}
    if field == "role":
        document.pop("operator")
    with pytest.raises(errors.SecureCommError):
        Card.from_json(document)


def test_a_card_signed_by_another_key_names_the_key_it_claims() -> None:
    document = custodian_cards()[0].to_json()
    forged = Card.issue(CUSTODIANS[1], "custodian", "http://127.0.0.3:5101", OPERATORS[0].public)
    document["signature"] = forged.to_json()["signature"]
    with pytest.raises(errors.SignatureError, match="not signed by the key it names"):
        Card.from_json(document)


def test_roles_and_operators_go_together() -> None:
    with pytest.raises(errors.ParameterError):
        Card.issue(RELAY, "relay", "http://127.0.0.2:5000", OPERATORS[0].public)
    with pytest.raises(errors.ParameterError):
        Card.issue(CUSTODIANS[0], "custodian", "http://127.0.0.3:5101")
    with pytest.raises(errors.FieldError):
        Card.issue(RELAY, "relay", "ftp://127.0.0.2/")


def test_a_network_round_trips() -> None:
    network = Network(relay_card(), custodian_cards(), 2)
    assert Network.from_bytes(network.to_bytes()) == network
    assert canonical.dumps(json.loads(network.to_bytes())) == network.to_bytes().rstrip(b"\n")


def test_a_threshold_above_n_is_refused() -> None:
    with pytest.raises(errors.ParameterError, match="threshold 4 with 3 custodians"):
        Network(relay_card(), custodian_cards(), 4)


def test_one_key_in_two_places_is_refused() -> None:
    cards = custodian_cards()
    twice = Card.issue(CUSTODIANS[0], "custodian", "http://127.0.0.9:5101", OPERATORS[1].public)
    with pytest.raises(errors.FieldError) as refused:
        Network(relay_card(), (cards[0], twice, cards[2]), 2)
    # named by place among the custodians, not by an index that counts the relay
    assert "'alpha' is custodian 1's and custodian 2's" in str(refused.value)
    # An operator whose key is also a custodian's could approve as that custodian's peer.
    shared = Card.issue(CUSTODIANS[1], "custodian", "http://127.0.0.4:5101", CUSTODIANS[0].public)
    with pytest.raises(errors.FieldError, match="same key"):
        Network(relay_card(), (cards[0], shared, cards[2]), 2)


def test_roles_are_where_the_file_says() -> None:
    with pytest.raises(errors.FieldError, match="relay's card is a custodian's"):
        Network(custodian_cards()[0], custodian_cards()[1:], 2)


# The commands: each party makes only its own key; the network file is made from cards alone


def test_each_party_initialises_itself_and_the_cards_make_a_network(tmp_path: Path) -> None:
    operator = load_or_create(tmp_path / "op" / "alpha-operator.key", "alpha-operator")
    relay_home, alpha_home = tmp_path / "relay", tmp_path / "alpha"
    main(["relay", "init", "--home", str(relay_home), "--url", "http://127.0.0.2:5000"])
    operator_pub = str(tmp_path / "op" / "alpha-operator.pub")
    main(
        ["custodian", "init", "--name", "alpha", "--home", str(alpha_home),
         "--url", "http://127.0.0.3:5101", "--operator", operator_pub]
    )  # fmt: skip
    keys = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.key"))
    assert keys == [
        "alpha/custodians/alpha/identity.key",
        "op/alpha-operator.key",
        "relay/relay/identity.key",
    ]
    assert (alpha_home / "custodians" / "alpha" / "operator.pub").exists()
    bravo = Card.issue(CUSTODIANS[1], "custodian", "http://127.0.0.4:5101", OPERATORS[1].public)
    (tmp_path / "bravo.card.json").write_bytes(bravo.to_bytes())
    out = tmp_path / "network.json"
    main(
        ["network", "create", "--relay", str(relay_home / "relay.card.json"),
         "--custodian", str(alpha_home / "alpha.card.json"),
         "--custodian", str(tmp_path / "bravo.card.json"), "--threshold", "2", "--out", str(out)]
    )  # fmt: skip
    network = Network.from_bytes(out.read_bytes())
    assert [c.name for c in network.custodians] == ["alpha", "bravo"]
    assert network.custodians[0].operator == operator.public


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "command",
    [
        ["custodian", "init", "--name", "bravo", "--url", "http://127.0.0.3:5101"],
        ["custodian", "init", "--name", "bravo", "--url", "http://127.0.0.4:5101"],
        ["relay", "init", "--url", "http://127.0.0.3:5101"],
        ["relay", "serve", "--host", "192.0.2.1", "--port", "9"],
        ["custodian", "serve", "--name", "bravo", "--host", "192.0.2.1", "--port", "9"],
    ],
)
def test_another_party_s_command_in_a_custodian_s_home_writes_nothing_there(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong --home put a second party's key beside alpha's: `custodian init --name
    bravo` at alpha's URL succeeded, and `relay serve` made relay/identity.key before it
    refused. One home holding two parties' keys is one machine holding two of them."""
    load_or_create(tmp_path / "op" / "op.key", "bravo-operator")
    home = tmp_path / "alpha"
    main(
        ["custodian", "init", "--name", "alpha", "--home", str(home),
         "--url", "http://127.0.0.3:5101", "--operator", str(tmp_path / "op" / "op.pub")]
    )  # fmt: skip
    before = _files(home)
    capsys.readouterr()
    operator = ["--operator", str(tmp_path / "op" / "op.pub")]
    extra = operator if command[:2] == ["custodian", "init"] else []
    with pytest.raises(SystemExit) as refused:
        main([*command, "--home", str(home), *extra])
    assert refused.value.code == 2
    assert "custodian alpha's home" in capsys.readouterr().err
    assert _files(home) == before


def test_relay_serve_refuses_a_person_s_home_before_making_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    (home / "network.json").write_bytes(Network(relay_card(), custodian_cards(), 2).to_bytes())
    with pytest.raises(SystemExit) as refused:
        main(["relay", "serve", "--host", "192.0.2.1", "--port", "9", "--home", str(home)])
    assert refused.value.code == 2
    assert "not the relay's home" in capsys.readouterr().err
    assert _files(home) == ["network.json"]


@pytest.mark.parametrize("port", ["70000", "0", "x"])
def test_a_url_whose_port_no_socket_has_is_refused(tmp_path: Path, port: str) -> None:
    """`relay init --url http://127.0.0.1:70000` signed a card for that URL and wrote
    `port = 80` into the relay's settings: a port past 65535 was taken for none at all."""
    url = f"http://127.0.0.2:{port}"
    with pytest.raises(errors.SecureCommError):
        Card.issue(RELAY, "relay", url)
    with pytest.raises(SystemExit) as refused:
        main(["relay", "init", "--home", str(tmp_path / "h"), "--url", url])
    assert refused.value.code == 2
    assert not (tmp_path / "h").exists()


def test_bad_cards_and_operator_files_are_bad_input_and_write_nothing(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "op.key", "alpha-operator")
    assert key.name == "alpha-operator"
    with pytest.raises(SystemExit) as refused:
        main(
            ["custodian", "init", "--name", "alpha", "--home", str(tmp_path / "h"),
             "--url", "http://127.0.0.3:5101", "--operator", str(tmp_path / "op.key")]
        )  # fmt: skip
    assert refused.value.code == 2
    assert not (tmp_path / "h" / "alpha.card.json").exists()
    document = custodian_cards()[0].to_json() | {"url": "http://127.0.0.9:1"}
    (tmp_path / "forged.card.json").write_bytes(canonical.dumps(document))
    (tmp_path / "relay.card.json").write_bytes(relay_card().to_bytes())
    with pytest.raises(SystemExit) as refused:
        main(
            ["network", "create", "--relay", str(tmp_path / "relay.card.json"),
             "--custodian", str(tmp_path / "forged.card.json"), "--custodian",
             str(tmp_path / "forged.card.json"), "--threshold", "2",
             "--out", str(tmp_path / "n.json")]
        )  # fmt: skip
    assert refused.value.code == 2
    assert not (tmp_path / "n.json").exists()


# The relay serves the network file it was given, and only one that names its own key


def _network_for(relay_key: Identity) -> Network:
    relay = Card.issue(relay_key, "relay", "http://127.0.0.2:5000")
    return Network(relay, custodian_cards(), 2)


def test_the_relay_serves_its_network_file_byte_for_byte(tmp_path: Path) -> None:
    from tests.unit._services import relay, settings_for

    settings = settings_for(tmp_path)
    assert relay(settings).send("GET", "/api/v1/network").status_code == 404
    own = load_or_create(settings.relay_dir() / "identity.key", "relay")
    data = _network_for(own).to_bytes()
    (tmp_path / "network.json").write_bytes(data)
    answer = relay(settings).send("GET", "/api/v1/network")
    assert answer.status_code == 200
    assert answer.data == data


def test_a_relay_given_a_network_file_naming_another_relay_will_not_start(
    tmp_path: Path,
) -> None:
    from securecomm.relay.app import create_relay_app
    from tests.unit._services import settings_for

    settings = settings_for(tmp_path)
    (tmp_path / "network.json").write_bytes(_network_for(RELAY).to_bytes())
    with pytest.raises(errors.IdentityError, match="will not serve it"):
        create_relay_app(settings)


# join: a client pins every key of the network file, and notices when it changes


def _write(path: Path, network: Network) -> str:
    path.write_bytes(network.to_bytes())
    return str(path)


def test_join_pins_every_key_and_refuses_one_that_changed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from securecomm.client.trust import KnownKeys

    home = tmp_path / "home"
    network = Network(relay_card(), custodian_cards(), 2)
    main(["join", _write(tmp_path / "n1.json", network), "--home", str(home)])
    known = KnownKeys.load(home)
    for identity in (RELAY, *CUSTODIANS, *OPERATORS):
        assert known.require(identity.name).fingerprint == identity.public.fingerprint
    main(["join", str(tmp_path / "n1.json"), "--home", str(home)])  # again: nothing new
    pinned = (home / "known_keys.json").read_bytes()
    # bravo's key replaced by another: refused, naming both fingerprints, nothing changed.
    impostor = Identity.generate("bravo")
    cards = custodian_cards()
    swapped = Card.issue(impostor, "custodian", "http://127.0.0.4:5101", OPERATORS[1].public)
    changed = Network(relay_card(), (cards[0], swapped, cards[2]), 2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["join", _write(tmp_path / "n2.json", changed), "--home", str(home)])
    assert refused.value.code == 1
    err = capsys.readouterr().err
    assert CUSTODIANS[1].public.short_fingerprint() in err
    assert impostor.public.short_fingerprint() in err
    assert (home / "known_keys.json").read_bytes() == pinned
    assert (home / "network.json").read_bytes() == network.to_bytes()


def test_join_shows_a_change_of_custodians_and_needs_accept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    two = Network(relay_card(), custodian_cards()[:2], 2)
    three = Network(relay_card(), custodian_cards(), 2)
    main(["join", _write(tmp_path / "two.json", two), "--home", str(home)])
    with pytest.raises(SystemExit) as refused:
        main(["join", _write(tmp_path / "three.json", three), "--home", str(home)])
    assert refused.value.code == 1
    assert (home / "network.json").read_bytes() == two.to_bytes()
    main(["join", str(tmp_path / "three.json"), "--accept", "--home", str(home)])
    assert (home / "network.json").read_bytes() == three.to_bytes()


def test_join_shows_a_change_of_tls_ca_and_needs_accept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new CA in the network file was taken silently by a home that had joined: whoever
    served it chose whom the clients trust to be every service."""
    from securecomm.tls import make_ca

    home = tmp_path / "home"
    ours, theirs = make_ca("our CA"), make_ca("their CA")
    relay, custodians = relay_card("https"), custodian_cards("https")
    first = Network(relay, custodians, 2, ours.pem.decode())
    swapped = Network(relay, custodians, 2, theirs.pem.decode())
    dropped = Network(relay, custodians, 2)
    main(["join", _write(tmp_path / "first.json", first), "--home", str(home)])
    capsys.readouterr()
    for label, network in (("swapped", swapped), ("dropped", dropped)):
        with pytest.raises(SystemExit) as refused:
            main(["join", _write(tmp_path / f"{label}.json", network), "--home", str(home)])
        assert refused.value.code == 1
        err = capsys.readouterr().err
        assert "changes the TLS CA" in err and "'our CA' sha256/" in err, err
        assert ("'their CA' sha256/" if network.tls_ca else "to none;") in err, err
        assert "--accept" in err
        assert (home / "network.json").read_bytes() == first.to_bytes()
    main(["join", str(tmp_path / "swapped.json"), "--accept", "--home", str(home)])
    assert (home / "network.json").read_bytes() == swapped.to_bytes()


# network create, from the command line: each bad set of cards is bad input, nothing written


def _cards_on_disk(tmp_path: Path, cards: dict[str, Card]) -> list[str]:
    paths = []
    for label, card in cards.items():
        path = tmp_path / f"{label}.card.json"
        path.write_bytes(card.to_bytes())
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    "case",
    [
        "name taken by another key",
        "one key twice",
        "threshold above n",
        "bad signature",
        "one address twice",
        "http with a TLS CA",
    ],
)
def test_network_create_refuses_bad_cards_and_writes_nothing(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = dict(zip(("a", "b", "c"), custodian_cards(), strict=True))
    threshold = "2"
    if case == "name taken by another key":
        cards["c"] = Card.issue(
            Identity.generate("alpha"), "custodian", "http://h:1", OPERATORS[2].public
        )
    elif case == "one key twice":
        cards["c"] = Card.issue(CUSTODIANS[0], "custodian", "http://h:1", OPERATORS[2].public)
    elif case == "threshold above n":
        threshold = "4"
    elif case == "one address twice":
        cards["c"] = Card.issue(
            CUSTODIANS[2], "custodian", "HTTP://127.0.0.3:5101/", OPERATORS[2].public
        )
    tls = []
    if case == "http with a TLS CA":
        from securecomm.tls import make_ca

        (tmp_path / "ca.pem").write_bytes(make_ca("our CA").pem)
        tls = ["--tls-ca", str(tmp_path / "ca.pem")]
    relay_path = _cards_on_disk(tmp_path, {"relay": relay_card()})[0]
    paths = _cards_on_disk(tmp_path, cards)
    if case == "bad signature":
        document = json.loads(Path(paths[1]).read_text())
        document["url"] = "http://127.0.0.66:1"
        Path(paths[1]).write_bytes(canonical.dumps(document))
    out = tmp_path / "network.json"
    custodians = [arg for path in paths for arg in ("--custodian", path)]
    with pytest.raises(SystemExit) as refused:
        main(["network", "create", "--relay", relay_path, *custodians,
              "--threshold", threshold, "--out", str(out), *tls])  # fmt: skip
    assert refused.value.code == 2
    assert not out.exists()
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("http://127.0.0.3:5101", "http://127.0.0.3:5101/"),
        ("http://Custodian.example", "http://custodian.example:80"),
        ("https://custodian.example", "https://CUSTODIAN.example:443"),
    ],
)
def test_two_parties_at_one_address_are_refused(first: str, second: str) -> None:
    """Both cards' shares would go to whichever service listens there: one party holding
    two shares, which lowers the threshold unseen."""
    alpha, bravo = (
        Card.issue(c, "custodian", url, o.public)
        for c, o, url in zip(CUSTODIANS, OPERATORS, (first, second), strict=False)
    )
    charlie = custodian_cards()[2]
    with pytest.raises(errors.FieldError, match="at one address"):
        Network(relay_card(), (alpha, bravo, charlie), 2)
    Network(relay_card(), (alpha, custodian_cards()[1], charlie), 2)  # apart, they are fine


def test_a_network_with_a_tls_ca_refuses_a_service_reached_in_the_clear() -> None:
    """Spec §14.2: with a CA, every service's certificate is checked against it; a card at
    http:// would be reached with no certificate to check."""
    from securecomm.tls import make_ca

    ca = make_ca("our CA").pem.decode()
    Network(relay_card("https"), custodian_cards("https"), 2, ca)
    for relay, custodians in (
        (relay_card("http"), custodian_cards("https")),
        (relay_card("https"), (*custodian_cards("https")[:2], custodian_cards("http")[2])),
    ):
        with pytest.raises(errors.FieldError, match="not https://"):
            Network(relay, custodians, 2, ca)


# The network's fingerprint: what a person compares to join from a relay's URL


def test_the_network_fingerprint_covers_the_whole_file_and_is_matched_as_printed() -> None:
    from securecomm.identity import fingerprint_matches

    network = Network(relay_card(), custodian_cards(), 2)
    other = Network(relay_card(), custodian_cards(), 3)
    assert network.fingerprint != other.fingerprint
    short = network.short_fingerprint()
    assert fingerprint_matches(network.fingerprint, short)
    assert fingerprint_matches(network.fingerprint, short.replace(" ", ":").upper())
    assert fingerprint_matches(network.fingerprint, network.fingerprint.hex())
    assert not fingerprint_matches(network.fingerprint, short[:-5])  # too short to count
    assert not fingerprint_matches(network.fingerprint, other.short_fingerprint())


def test_joining_from_a_url_the_first_time_needs_the_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["join", "http://127.0.0.2:9", "--home", str(tmp_path / "h")])
    assert refused.value.code == 2
    assert "--fingerprint" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_joining_a_file_checks_the_fingerprint_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`join network.json --fingerprint FP` joined whatever the file was: the fingerprint
    was compared only for a relay's URL."""
    network = Network(relay_card(), custodian_cards(), 2)
    path = tmp_path / "network.json"
    path.write_bytes(network.to_bytes())
    told = network.short_fingerprint()
    wrong = told[:-1] + ("0" if told[-1] != "0" else "1")
    for fingerprint, said, code in (
        (wrong, f"has fingerprint {told}, not {wrong}", 1),
        (told[:9], "too short to compare", 2),
    ):
        with pytest.raises(SystemExit) as refused:
            main(["join", str(path), "--fingerprint", fingerprint, "--home", str(tmp_path / "h")])
        assert refused.value.code == code
        assert said in capsys.readouterr().err
        assert not (tmp_path / "h").exists()
    main(["join", str(path), "--fingerprint", told, "--home", str(tmp_path / "h")])
    assert (tmp_path / "h" / "network.json").read_bytes() == path.read_bytes()


def test_join_takes_the_fingerprint_unquoted_and_says_when_no_network_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from securecomm.cli import network as network_cli

    groups = ["6707", "fdec", "0a1b", "2c3d", "4e5f", "6a7b", "8c9d", "0e1f"]
    args = build_parser().parse_args(["join", "--fingerprint", *groups, "http://relay:5000"])
    network_cli._network_and_fingerprint(args)
    assert (args.network, args.fingerprint) == ("http://relay:5000", " ".join(groups))
    args = build_parser().parse_args(["join", "net.json", "--fingerprint", "6707:FDEC"])
    network_cli._network_and_fingerprint(args)
    assert (args.network, args.fingerprint) == ("net.json", "6707:FDEC")
    for words in ([], ["--fingerprint", *groups]):
        with pytest.raises(SystemExit) as refused:
            main(["join", *words, "--home", str(tmp_path / "h")])
        assert refused.value.code == 2
        assert "name the network" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


# Settings from a joined network file


def test_a_joined_network_file_gives_the_relay_the_custodians_and_the_threshold(
    tmp_path: Path,
) -> None:
    from securecomm.config import load_settings

    network = Network(relay_card(), custodian_cards(), 2)
    (tmp_path / "network.json").write_bytes(network.to_bytes())
    settings = load_settings(tmp_path, env={})
    assert settings.server_url == "http://127.0.0.2:5000"
    assert (settings.server_host, settings.server_port) == ("127.0.0.2", 5000)
    assert (settings.n_shares, settings.threshold) == (3, 2)
    assert [(c.name, c.host, c.port) for c in settings.custodians] == [
        ("alpha", "127.0.0.3", 5101), ("bravo", "127.0.0.4", 5101), ("charlie", "127.0.0.5", 5101)
    ]  # fmt: skip
    # The environment still points a link elsewhere (a proxy), as the README says.
    env = {"SECURECOMM_CUSTODIAN_BRAVO_URL": "http://127.0.0.1:9999"}
    assert load_settings(tmp_path, env=env).custodian("bravo").url == "http://127.0.0.1:9999"
    # The TOML may say where a named custodian keeps its database, not add one or change t.
    (tmp_path / "securecomm.toml").write_text(
        '[[custodians]]\nname = "bravo"\ndatabase_url = "sqlite:////tmp/b.db"\n'
    )
    assert load_settings(tmp_path, env={}).custodian_database("bravo") == "sqlite:////tmp/b.db"
    (tmp_path / "securecomm.toml").write_text('[[custodians]]\nname = "zulu"\nport = 1\n')
    with pytest.raises(errors.ParameterError, match="not in the network file"):
        load_settings(tmp_path, env={})
    (tmp_path / "securecomm.toml").write_text("[shares]\nthreshold = 3\n")
    with pytest.raises(errors.ParameterError, match="the network file decides"):
        load_settings(tmp_path, env={})
    (tmp_path / "securecomm.toml").unlink()
    with pytest.raises(errors.ParameterError, match="the network file decides"):
        load_settings(tmp_path, env={"THRESHOLD": "3"})


def test_a_custodian_home_serves_its_own_custodian(tmp_path: Path) -> None:
    from securecomm.config import load_settings

    operator = load_or_create(tmp_path / "op" / "alpha-operator.key", "alpha-operator")
    assert operator.name == "alpha-operator"
    home, pub = tmp_path / "alpha", str(tmp_path / "op" / "alpha-operator.pub")
    main(["custodian", "init", "--name", "alpha", "--home", str(home),
          "--url", "http://127.0.0.3:5111", "--operator", pub])  # fmt: skip
    settings = load_settings(home, env={})
    assert settings.own_custodian is not None
    assert (settings.own_custodian.name, settings.own_custodian.host) == ("alpha", "127.0.0.3")
    assert settings.custodian("alpha").port == 5111
    # Run again with another URL: the settings say otherwise, and nothing is changed.
    with pytest.raises(SystemExit) as refused:
        main(["custodian", "init", "--name", "alpha", "--home", str(home), "--force",
              "--url", "http://127.0.0.3:6000", "--operator", pub])  # fmt: skip
    assert refused.value.code == 2
    assert load_settings(home, env={}).custodian("alpha").port == 5111


def test_contacts_verify_marks_only_the_fingerprint_pinned(tmp_path: Path) -> None:
    from securecomm.client.trust import KnownKeys

    known = KnownKeys.load(tmp_path)
    known.pin(CUSTODIANS[0].public)
    with pytest.raises(errors.IdentityError, match="not marked as verified"):
        known.verify("alpha", CUSTODIANS[1].public.short_fingerprint())
    known.verify("alpha", CUSTODIANS[0].public.short_fingerprint())
    known.save()
    assert KnownKeys.load(tmp_path).verified == {"alpha"}


def test_init_names_a_tls_certificate_in_the_new_settings(tmp_path: Path) -> None:
    from securecomm.config import load_settings
    from securecomm.tls import make_ca

    home = tmp_path / "relay"
    make_ca().issue("relay", ["127.0.0.2"]).write(home / "tls")
    main(["relay", "init", "--home", str(home), "--url", "https://127.0.0.2:5000",
          "--tls-cert", "tls/relay.pem", "--tls-key", "tls/relay.key"])  # fmt: skip
    settings = load_settings(home, env={})
    assert settings.tls_cert == home / "tls" / "relay.pem"
    assert settings.tls_key == home / "tls" / "relay.key"
    # A certificate for a plain-HTTP URL, or a missing file, is bad input; nothing is made.
    for url, cert in (("http://127.0.0.2:5000", "tls/relay.pem"), ("https://h:1", "nope.pem")):
        other = tmp_path / f"other-{cert[:4]}"
        (other / "tls").mkdir(parents=True)
        (other / "tls" / "relay.pem").write_bytes((home / "tls" / "relay.pem").read_bytes())
        (other / "tls" / "relay.key").write_bytes((home / "tls" / "relay.key").read_bytes())
        with pytest.raises(SystemExit) as refused:
            main(["relay", "init", "--home", str(other), "--url", url,
                  "--tls-cert", cert, "--tls-key", "tls/relay.key"])  # fmt: skip
        assert refused.value.code == 2
        assert not (other / "securecomm.toml").exists()


@pytest.mark.parametrize(
    ("names", "host", "covered"),
    [
        (["127.0.0.2"], "127.0.0.2", True),
        (["127.0.0.2"], "127.0.0.3", False),
        (["::1"], "[::1]", True),
        (["relay.example"], "RELAY.example.", True),
        (["relay.example"], "127.0.0.2", False),
        (["*.example"], "relay.example", True),
        (["*.example"], "a.relay.example", False),  # one label only
        (["*.example"], "example", False),
        (["127.0.0.2"], "127.0.0.2.nip.io", False),
        ([], "relay.example", False),
    ],
)
def test_a_certificate_is_for_a_host_as_a_client_checks_it(
    names: list[str], host: str, covered: bool
) -> None:
    from securecomm.tls import is_for_host

    assert is_for_host(names, host) is covered


def test_init_refuses_a_certificate_for_another_host_and_serve_warns_of_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate issued for another name was taken at init, and the service served it:
    every client then refused the service, and only they said why."""
    from securecomm.cli.services import _tls
    from securecomm.config import load_settings
    from securecomm.tls import make_ca

    home = tmp_path / "relay"
    make_ca().issue("relay", ["relay.example", "127.0.0.2"]).write(home / "tls")
    with pytest.raises(SystemExit) as refused:
        main(["relay", "init", "--home", str(home), "--url", "https://127.0.0.9:5000",
              "--tls-cert", "tls/relay.pem", "--tls-key", "tls/relay.key"])  # fmt: skip
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "is for relay.example, 127.0.0.2, not 127.0.0.9" in err, err
    assert not (home / "securecomm.toml").exists() and not (home / "relay").exists()
    main(["relay", "init", "--home", str(home), "--url", "https://relay.example:5000",
          "--tls-cert", "tls/relay.pem", "--tls-key", "tls/relay.key"])  # fmt: skip
    settings = load_settings(home, env={})
    capsys.readouterr()
    assert _tls(settings, settings.server_url) == (settings.tls_cert, settings.tls_key)
    assert "warning" not in capsys.readouterr().err
    make_ca().issue("relay", ["other.example"]).write(home / "tls")  # renewed, wrongly
    assert _tls(settings, settings.server_url) is not None
    assert "is for other.example, not relay.example" in capsys.readouterr().err


def test_init_with_a_certificate_refuses_a_home_whose_settings_name_none(tmp_path: Path) -> None:
    from securecomm.tls import make_ca

    home = tmp_path / "relay"
    main(["relay", "init", "--home", str(home), "--url", "https://127.0.0.2:5000"])
    settings_before = (home / "securecomm.toml").read_bytes()
    make_ca().issue("relay", ["127.0.0.2"]).write(home / "tls")
    with pytest.raises(SystemExit) as refused:
        main(["relay", "init", "--home", str(home), "--url", "https://127.0.0.2:5000", "--force",
              "--tls-cert", "tls/relay.pem", "--tls-key", "tls/relay.key"])  # fmt: skip
    assert refused.value.code == 2
    assert (home / "securecomm.toml").read_bytes() == settings_before


@pytest.mark.parametrize(
    "variable", ["SECURECOMM_SERVER_URL", "SERVER_URL", "SECURECOMM_CUSTODIAN_BRAVO_URL"]
)
def test_an_http_url_put_in_place_of_a_tls_service_is_refused(
    tmp_path: Path, variable: str
) -> None:
    """Pointing a client of a TLS network at an http:// URL (a proxy, a typo) sent its
    requests in the clear, the network's CA never consulted (spec §14.2: MUST verify)."""
    from securecomm.config import load_settings
    from securecomm.network import NETWORK_FILE
    from securecomm.tls import make_ca

    ca = make_ca("our CA").pem.decode()
    home = tmp_path / "home"
    home.mkdir()
    (home / NETWORK_FILE).write_bytes(
        Network(relay_card("https"), custodian_cards("https"), 2, ca).to_bytes()
    )
    with pytest.raises(errors.ParameterError, match=r"https://") as refused:
        load_settings(home, env={variable: "http://127.0.0.9:8080"})
    assert variable.removeprefix("SECURECOMM_") in str(refused.value)
    moved = load_settings(home, env={variable: "https://127.0.0.9:8443"})
    assert "https://127.0.0.9:8443" in {moved.server_url, *(c.url for c in moved.custodians)}
    (home / NETWORK_FILE).write_bytes(Network(relay_card(), custodian_cards(), 2).to_bytes())
    plain = load_settings(home, env={variable: "http://127.0.0.9:8080"})
    assert "http://127.0.0.9:8080" in {plain.server_url, *(c.url for c in plain.custodians)}
