"""Settings: embedded defaults, then the network file this home joined
(``HOME/network.json``: the relay's URL, the custodians, the threshold), then
``HOME/securecomm.toml``, then the environment.

The names follow the seed's: SERVER_HOST, SERVER_PORT, SERVER_URL,
N_SHARES, THRESHOLD; the storage directory is the home (``--home``, env
``SECURECOMM_HOME``, default ``./securecomm-data``). Each custodian's URL
can be pointed elsewhere (a proxy, say) with ``SECURECOMM_CUSTODIAN_<NAME>_URL``,
and the relay's with ``SECURECOMM_SERVER_URL`` or ``SERVER_URL``; in a network whose
file names a TLS CA, only to another ``https://`` URL. The browser
origins whose pages may call the custodians (CORS) are the relay's own origin
unless ``[server] web_origins`` or ``SECURECOMM_WEB_ORIGINS`` (comma-separated)
name others.

``[server] replicas`` (default 1) is how many relay processes ``securecomm up`` runs
behind one address (``up --relay-replicas`` overrides it). The relay's database is
``[server] database_url`` (env ``SECURECOMM_RELAY_DATABASE_URL``), default its SQLite
file; a server's password may stay out of the URL, in a file of its own
(``[server] database_password_file``, env ``SECURECOMM_RELAY_DATABASE_PASSWORD_FILE``:
a Docker secret, say).

A party on its own host keeps its own settings in its own home: ``relay init``
writes ``[server] url, host, port``; ``custodian init`` writes ``[custodian] name,
url, host, port`` (the custodian this home serves). Where a network file was
joined, the custodians and the threshold are the file's: the TOML may set where a
named custodian listens or keeps its database, never add one or change the threshold.

Home layout::

    HOME/securecomm.toml              settings (optional)
    HOME/network.json                 the network file this home joined (optional)
    HOME/relay/identity.key           the relay's identity
    HOME/relay/custodians/NAME.pub    each custodian's public key, given to the relay
    HOME/relay/relay.db               its SQLite database
    HOME/relay/payloads/DIGEST        a stored payload stream (format v2), named by its SHA-256
    HOME/relay/payloads/partial/ID    an open upload of one, named by its message id
    HOME/custodians/NAME/identity.key the custodian's identity
    HOME/custodians/NAME/operator.pub the public identity of its operator
    HOME/custodians/NAME/custodian.db its SQLite database
    HOME/operators/NAME.key           an operator's identity (for the CLI)
    HOME/users/NAME.key               a user's identity
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from . import stream
from .errors import FieldError, ParameterError
from .identity import check_name
from .network import Network, joined
from .shamir import check_parameters

__all__ = [
    "DEFAULT_CUSTODIANS",
    "DEFAULT_HOME",
    "DEFAULT_MAX_ENVELOPE_BYTES",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DEFAULT_MAX_SENDER_BYTES",
    "MAX_PIECE_BYTES",
    "MAX_RELAY_REPLICAS",
    "CustodianSettings",
    "Settings",
    "browser_refuses_port",
    "load_settings",
    "request_limit_bytes",
]

DEFAULT_HOME = Path("securecomm-data")
DEFAULT_CUSTODIANS = ("alpha", "bravo", "charlie", "delta", "echo")
DEFAULT_RELAY_PORT = 5000
DEFAULT_FIRST_CUSTODIAN_PORT = 5101
DEFAULT_MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
#: The longest payload stream (format v2) the relay takes, and what one sender may hold
#: there at once: stored messages and open uploads together.
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024**3
DEFAULT_MAX_SENDER_BYTES = 16 * 1024**3
#: The most one piece of a payload stream's upload or download holds (spec/format-v2.md
#: section 5): 64 sealed chunks, 4,195,328 bytes.
MAX_PIECE_BYTES = 64 * stream.SEALED_CHUNK_BYTES
#: The most relay replicas ``up`` starts on one machine: each is a gunicorn master and its
#: workers, all on one database; more than this is a mistake, not a deployment.
MAX_RELAY_REPLICAS = 16
CONFIG_FILE = "securecomm.toml"


@dataclass(frozen=True)
class CustodianSettings:
    name: str
    host: str
    port: int
    url: str
    database_url: str | None = None


@dataclass(frozen=True)
class Settings:
    home: Path
    server_host: str = "127.0.0.1"
    server_port: int = DEFAULT_RELAY_PORT
    server_url: str = f"http://127.0.0.1:{DEFAULT_RELAY_PORT}"
    relay_database_url: str | None = None
    #: A file holding the relay's database password, put into its URL when connecting.
    relay_database_password_file: Path | None = None
    #: How many relay processes ``securecomm up`` runs behind one address (``[server]
    #: replicas``); 1 is the relay alone, without a front.
    relay_replicas: int = 1
    max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES
    #: The longest payload stream the relay takes (``[server] max_payload_bytes``).
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    #: What one sender's stored messages and open uploads may hold at the relay, in bytes
    #: (``[server] max_sender_bytes``).
    max_sender_bytes: int = DEFAULT_MAX_SENDER_BYTES
    n_shares: int = 5
    threshold: int = 3
    custodians: tuple[CustodianSettings, ...] = field(default_factory=tuple)
    #: The custodian this home serves (``[custodian]``), if it is a custodian's home.
    own_custodian: CustodianSettings | None = None
    workers: int = 2
    #: Browser origins whose pages may call the custodians (CORS); default: the relay's own.
    web_origins: tuple[str, ...] = ()
    #: This service's TLS certificate chain and key (``[tls] cert``, ``key``), if it has one.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The CA a client trusts for the services' certificates (PEM): the joined network
    #: file's, else ``[tls] ca``; None: the system's trust store.
    tls_ca: str | None = None

    def party_names(self) -> frozenset[str]:
        """The names the network's own parties hold (the relay's identity is "relay"): no
        person may take one, or whoever looks it up would pin that person's key in the
        place of the party's."""
        return frozenset({"relay", *(c.name for c in self.custodians)})

    def allowed_origins(self) -> tuple[str, ...]:
        return self.web_origins or (origin_of(self.server_url),)

    def custodian(self, name: str) -> CustodianSettings:
        if self.own_custodian is not None and self.own_custodian.name == name:
            return self.own_custodian
        for custodian in self.custodians:
            if custodian.name == name:
                return custodian
        known = ", ".join(c.name for c in self.custodians)
        raise ParameterError(f"config: no custodian named {name!r} (known: {known})")

    def relay_dir(self) -> Path:
        return self.home / "relay"

    def custodian_dir(self, name: str) -> Path:
        return self.home / "custodians" / check_name(name)

    def relay_database(self) -> str:
        url = self.relay_database_url or f"sqlite:///{self.relay_dir() / 'relay.db'}"
        if self.relay_database_password_file is None:
            return url
        return _with_password(url, self.relay_database_password_file)

    def custodian_database(self, name: str) -> str:
        configured = self.custodian(name).database_url
        return configured or f"sqlite:///{self.custodian_dir(name) / 'custodian.db'}"


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def origin_of(url: str) -> str:
    """The origin (scheme://host[:port]) of an http(s) URL, as a browser spells it."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    if not _ORIGIN.fullmatch(origin) or "@" in parts.netloc:
        raise ParameterError(f"config: {url!r} is not an http(s) URL")
    default_port = {"http": ":80", "https": ":443"}[parts.scheme]
    return origin.removesuffix(default_port)


def _origins(value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ParameterError("config: web_origins must be a list of origins")
    result = []
    for item in items:
        origin = origin_of(item.strip())
        if origin != item.strip().rstrip("/").lower():
            raise ParameterError(f"config: web origin {item!r} must be scheme://host[:port] only")
        result.append(origin)
    return tuple(result)


def _default_custodians(count: int) -> tuple[CustodianSettings, ...]:
    names = list(DEFAULT_CUSTODIANS) + [f"custodian{i}" for i in range(6, count + 1)]
    result = []
    for i, name in enumerate(names[:count]):
        port = DEFAULT_FIRST_CUSTODIAN_PORT + i
        result.append(CustodianSettings(name, "127.0.0.1", port, f"http://127.0.0.1:{port}"))
    return tuple(result)


def _int(value: object, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        raise ParameterError(f"config: {name} must be an integer, got {value!r}") from None


def _port(value: object, name: str) -> int:
    """A TCP port to listen on: 1 to 65535 (0 would be any free port, which no URL names)."""
    port = _int(value, name)
    if not 1 <= port <= 65535:
        raise ParameterError(f"config: {name} must be a port, 1 to 65535, got {port}")
    return port


def _size(value: object, name: str) -> int:
    """A limit in bytes: a positive integer (a stream's length fits 2**53 - 1)."""
    size = _int(value, name)
    if not 1 <= size <= 2**53 - 1:
        raise ParameterError(f"config: {name} must be from 1 to 2**53 - 1 bytes, got {size}")
    return size


def _table(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParameterError(f"config: {name} must be a table")
    return value


def address_of(url: str) -> tuple[str, int]:
    """The host and port an http(s) URL names (the port defaulting to the scheme's)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # past 65535, or not a number: not the scheme's default port
        port = 0
    if parts.scheme not in {"http", "https"} or not parts.hostname or port == 0:
        raise ParameterError(f"{url!r} is not an http(s)://HOST[:PORT] URL")
    return parts.hostname, port or {"http": 80, "https": 443}[parts.scheme]


#: The ports every browser refuses to connect to over http(s): the "bad ports" of the
#: WHATWG Fetch standard (https://fetch.spec.whatwg.org/#port-blocking), as of 2024.
_BROWSER_BAD_PORTS = frozenset(
    {
        *(1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95),
        *(101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161),
        *(179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563),
        *(587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060),
        *(5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080),
    }
)


def browser_refuses_port(url: str) -> int | None:
    """The port of ``url`` if browsers refuse to open it (the web client served there
    cannot be used), else None."""
    _, port = address_of(url)
    return port if port in _BROWSER_BAD_PORTS else None


def _custodian(
    value: object, section: str = "[[custodians]]", given: CustodianSettings | None = None
) -> CustodianSettings:
    """A custodian's table; ``given`` is what the network file says of it, if anything."""
    table = _table(value, section)
    try:
        name = check_name(table.get("name"), field="custodian name")
    except FieldError as exc:
        raise ParameterError(f"config: {exc}") from None
    url = table.get("url", given.url if given else None)
    default_host, default_port = address_of(url) if isinstance(url, str) else ("127.0.0.1", None)
    host = _str(table.get("host", default_host), f"custodians.{name}.host")
    port = _port(table.get("port", default_port), f"custodians.{name}.port")
    url = _str(url if url is not None else f"http://{host}:{port}", f"custodians.{name}.url")
    database_url = table.get("database_url")
    if database_url is not None:
        database_url = _str(database_url, f"custodians.{name}.database_url")
    return CustodianSettings(name, host, port, url, database_url)


def _optional_str(value: object, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ParameterError(f"config: {name} must be a string, got {value!r}")
    return value


def _over_tls(url: str | None, name: str) -> None:
    """A network that names a TLS CA is reached over TLS only (spec §14.2): an ``http://``
    URL put in its place would send every request, and take every answer, in the clear."""
    if url is not None and urlsplit(url).scheme.lower() != "https":
        raise ParameterError(
            f"config: {name} is {url}, but this network's services speak TLS (its network"
            " file names a CA), so every URL must start with https://"
        )


def load_settings(
    home: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then HOME/network.json and HOME/securecomm.toml if they exist, then the
    environment."""
    env = os.environ if env is None else env
    home_path = Path(home if home is not None else env.get("SECURECOMM_HOME", DEFAULT_HOME))
    data: dict[str, Any] = {}
    config_path = home_path / CONFIG_FILE
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ParameterError(f"config: {config_path} is not valid TOML ({exc})") from None
    network = joined(home_path)
    server = _table(data.get("server", {}), "[server]")
    shares = _table(data.get("shares", {}), "[shares]")
    if network is None:
        n = _int(env.get("N_SHARES", shares.get("n", 5)), "N_SHARES")
        t = _int(env.get("THRESHOLD", shares.get("threshold", 3)), "THRESHOLD")
        relay_host, relay_port, relay_url = "127.0.0.1", DEFAULT_RELAY_PORT, None
    else:
        n, t = len(network.custodians), network.threshold
        _same_as_network(n, t, env, shares, home_path)
        relay_url = network.relay.url
        relay_host, relay_port = address_of(relay_url)
    host = _str(env.get("SERVER_HOST", server.get("host", relay_host)), "SERVER_HOST")
    port = _port(env.get("SERVER_PORT", server.get("port", relay_port)), "SERVER_PORT")
    url = env.get("SECURECOMM_SERVER_URL") or env.get("SERVER_URL") or server.get("url", relay_url)
    custodians = _custodians(data.get("custodians"), network, n)
    custodians = tuple(
        replace(c, url=env.get(f"SECURECOMM_CUSTODIAN_{c.name.upper()}_URL", c.url))
        for c in custodians
    )
    own = data.get("custodian")
    own_custodian = None if own is None else _custodian(own, "[custodian]")
    tls = _table(data.get("tls", {}), "[tls]")
    cert, key = (tls.get(k) for k in ("cert", "key"))
    if (cert is None) != (key is None):
        raise ParameterError("config: [tls] needs both cert and key, or neither")
    tls_ca = network.tls_ca if network is not None else None
    if tls_ca is None and tls.get("ca") is not None:
        tls_ca = _read_pem(home_path / _str(tls["ca"], "tls.ca"), "tls.ca")
    if network is not None and network.tls_ca is not None:
        _over_tls(url, "SECURECOMM_SERVER_URL (or SERVER_URL, [server] url)")
        for c in custodians:
            _over_tls(c.url, f"SECURECOMM_CUSTODIAN_{c.name.upper()}_URL")
    check_parameters(n, t)
    password_file = env.get(
        "SECURECOMM_RELAY_DATABASE_PASSWORD_FILE", server.get("database_password_file")
    )
    return Settings(
        home=home_path,
        server_host=host,
        server_port=port,
        server_url=_str(url or f"http://{host}:{port}", "SERVER_URL").rstrip("/"),
        relay_database_url=_optional_str(
            env.get("SECURECOMM_RELAY_DATABASE_URL", server.get("database_url")),
            "server.database_url",
        ),
        relay_database_password_file=(
            None
            if password_file is None
            else home_path / _str(password_file, "server.database_password_file")
        ),
        relay_replicas=replica_count(server.get("replicas", 1)),
        max_envelope_bytes=_int(
            server.get("max_envelope_bytes", DEFAULT_MAX_ENVELOPE_BYTES), "max_envelope_bytes"
        ),
        max_payload_bytes=_size(
            server.get("max_payload_bytes", DEFAULT_MAX_PAYLOAD_BYTES), "max_payload_bytes"
        ),
        max_sender_bytes=_size(
            server.get("max_sender_bytes", DEFAULT_MAX_SENDER_BYTES), "max_sender_bytes"
        ),
        n_shares=n,
        threshold=t,
        custodians=custodians,
        own_custodian=own_custodian,
        workers=_workers(env.get("SECURECOMM_WORKERS", server.get("workers", 2))),
        web_origins=_origins(env.get("SECURECOMM_WEB_ORIGINS", server.get("web_origins", []))),
        tls_cert=None if cert is None else home_path / _str(cert, "tls.cert"),
        tls_key=None if key is None else home_path / _str(key, "tls.key"),
        tls_ca=tls_ca,
    )


def request_limit_bytes(max_envelope_bytes: int) -> int:
    """The largest request body the relay (and a front before it) reads: an envelope up to
    ``max_envelope_bytes`` or a whole piece of a stream, whichever is larger."""
    return max(max_envelope_bytes, MAX_PIECE_BYTES)


def replica_count(value: object, name: str = "server.replicas") -> int:
    """A number of relay replicas: an integer from 1 to MAX_RELAY_REPLICAS."""
    count = _int(value, name)
    if not 1 <= count <= MAX_RELAY_REPLICAS:
        raise ParameterError(
            f"config: {name} must be from 1 (the relay alone) to {MAX_RELAY_REPLICAS}, got {count}"
        )
    return count


def _workers(value: object) -> int:
    workers = _int(value, "workers")
    if workers < 1:
        raise ParameterError(f"config: workers must be 1 or more, got {workers}")
    return workers


def _with_password(url: str, path: Path) -> str:
    """``url`` with the password read from ``path`` (its first line) put into it,
    percent-encoded as a URL's user information is."""
    parts = urlsplit(url)
    if "://" not in url or not parts.scheme:
        raise ParameterError("config: server.database_url is not a database URL")
    if parts.scheme.split("+")[0] == "sqlite":
        raise ParameterError(
            "config: server.database_password_file is for a database server's URL"
            " (postgresql://...), not SQLite's"
        )
    if parts.password is not None:
        raise ParameterError(
            "config: server.database_url has a password already; give it there or in"
            " database_password_file, not both"
        )
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(
            f"config: database_password_file: cannot read {path} ({exc})"
        ) from None
    if not lines or not lines[0]:
        raise ParameterError(f"config: database_password_file {path} is empty")
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(lines[0], safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _read_pem(path: Path, name: str) -> str:
    try:
        return path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"config: {name}: cannot read {path} ({exc})") from None


def _network_custodians(network: Network) -> tuple[CustodianSettings, ...]:
    result = []
    for card in network.custodians:
        host, port = address_of(card.url)
        result.append(CustodianSettings(card.name, host, port, card.url))
    return tuple(result)


def _custodians(tables: object, network: Network | None, n: int) -> tuple[CustodianSettings, ...]:
    """The custodians: the network file's, or the TOML's, or the defaults. With a network
    file, a ``[[custodians]]`` table may only say where a custodian it names listens."""
    if tables is None:
        return _default_custodians(n) if network is None else _network_custodians(network)
    if not isinstance(tables, list):
        raise ParameterError("config: [[custodians]] must be a list of tables")
    if network is None:
        custodians = tuple(_custodian(table) for table in tables)
    else:
        given = {c.name: c for c in _network_custodians(network)}
        configured = {}
        for table in tables:
            name = _table(table, "[[custodians]]").get("name")
            if name not in given:
                raise ParameterError(
                    f"config: custodian {name!r} is not in the network file this home joined"
                    f" ({', '.join(given)}); the network file names the custodians"
                )
            configured[name] = _custodian(table, given=given[name])
        custodians = tuple(configured.get(name, c) for name, c in given.items())
    names = [c.name for c in custodians]
    for name in names:
        if names.count(name) > 1:
            raise ParameterError(f"config: custodian {name!r} is configured twice")
    if len(custodians) != n:
        raise ParameterError(
            f"config: N_SHARES is {n} but {len(custodians)} custodian(s) are configured"
        )
    return custodians


def _same_as_network(
    n: int, t: int, env: Mapping[str, str], shares: Mapping[str, Any], home: Path
) -> None:
    """Refuse a TOML or environment that says other numbers than the joined network file."""
    for name, value, key in (("N_SHARES", n, "n"), ("THRESHOLD", t, "threshold")):
        said = env.get(name, shares.get(key))
        if said is not None and _int(said, name) != value:
            raise ParameterError(
                f"config: {name} is {said} but {home / 'network.json'} says {t} of {n};"
                " the network file decides (join a new one to change it)"
            )
