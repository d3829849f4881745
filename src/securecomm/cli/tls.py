"""``securecomm tls ca | issue``: a private CA and the services' host certificates, for
those who do not bring their own (a public CA, their own PKI)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import CliError, refuse_existing


def cmd_tls_ca(args: argparse.Namespace) -> None:
    from ..tls import CA_CERT, CA_KEY, chromium_trust_flag, make_ca

    out = Path(args.out)
    for name in (CA_CERT, CA_KEY):
        refuse_existing(out / name, args.force, "--out")
    ca = make_ca(args.name)
    cert, key = ca.write(out)
    print(f"CA certificate: {cert} (public: it goes into the network file, --tls-ca)")
    print(f"CA key:         {key} (mode 0600: whoever has it can pose as any service)")
    # The hash as Chromium takes it: printed in hex, it was a hash no browser option reads.
    print(
        f"for the web client: import {cert} into the browser as a trusted authority, or"
        f" start Chromium with {chromium_trust_flag(ca.pem)}"
    )


def _address(text: str) -> str:
    """An argparse type: an IP address (a name given as one went into the certificate as a
    DNS name, and 999.1.1.1 too)."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IP address (a DNS name goes to --host)"
        ) from None


def cmd_tls_issue(args: argparse.Namespace) -> None:
    from ..tls import CertificateAuthority

    hosts = [*(args.host or []), *(args.ip or [])]
    if not hosts:
        raise CliError("name at least one --host or --ip the service is reached by", code=2)
    out = Path(args.out)
    for suffix in (".pem", ".key"):
        refuse_existing(out / f"{args.name}{suffix}", args.force, "--out")
    issued = CertificateAuthority.load(Path(args.ca)).issue(args.name, hosts)
    cert, key = issued.write(out)
    expires = issued.certificate.not_valid_after_utc.date()
    print(f"certificate: {cert} (the host's, then the CA's) for {', '.join(hosts)}")
    print(f"key:         {key} (mode 0600; it stays on that host)")
    print(f"valid until {expires}; issue a new one before then (docs/deployment.md)")
    print("in that service's securecomm.toml (paths may also be relative to its home):")
    print(f'  [tls]\n  cert = "{cert.resolve()}"\n  key = "{key.resolve()}"')


def add_commands(sub: Any) -> None:
    from ._common import command_group

    tls = command_group(
        sub,
        "tls",
        "a private CA and host certificates for the services' HTTPS",
        "TLS hides who talks to whom; the contents are sealed and signed either way, and"
        " the services' keys stay pinned from the network file.",
    )
    p = tls.add_parser(
        "ca",
        help="make a private certificate authority",
        description="Write DIR/ca.pem (the CA's certificate: give it to `network create"
        " --tls-ca`) and DIR/ca.key (mode 0600; keep it off the services' hosts).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write it")
    p.add_argument("--name", default="securecomm private CA", help="the CA's common name")
    p.add_argument("--force", action="store_true", help="replace an existing CA")
    p.set_defaults(func=cmd_tls_ca)
    p = tls.add_parser(
        "issue",
        help="issue a host certificate from the private CA",
        description="Write DIR/NAME.pem (the certificate, then the CA's) and DIR/NAME.key"
        " for a service reached as each --host and --ip; ECDSA P-256, serverAuth, valid"
        " 397 days. Give both to that service's home: [tls] cert and key.",
    )
    p.add_argument("--ca", required=True, metavar="DIR", help="the CA's directory")
    p.add_argument("--name", required=True, help="the service (relay, alpha, ...)")
    p.add_argument("--host", action="append", metavar="DNS", help="a DNS name it is reached by")
    p.add_argument(
        "--ip",
        action="append",
        type=_address,
        metavar="IP",
        help="an IP address it is reached by",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write them")
    p.add_argument("--force", action="store_true", help="replace an existing certificate")
    p.set_defaults(func=cmd_tls_issue)
