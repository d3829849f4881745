"""``securecomm devices init | add | list | revoke``: a person's other devices (spec/sessions.md
section 3). A device makes a key of its own (``init``, in its own home); the person lets
it act for them for a while (``add``, with their own key); ``revoke`` ends that at the
relay and at every custodian."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from ._common import (
    EXIT_BAD_INPUT,
    CliError,
    command_group,
    finished_by_again,
    home_option,
    load_identity,
    new_passphrase,
    new_passphrase_options,
    parse_duration,
    passphrase_options,
    settings_of,
)

__all__ = ["add_commands"]

DEFAULT_DELEGATION = "90d"


def _when(moment: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))


def _person_key(args: argparse.Namespace, name: str) -> Any:
    """``name``'s own identity, read from their key file with its passphrase (an agent
    does not sign a delegation or a revocation: they outlive its session)."""
    from ..local.layout import user_key_path

    settings = settings_of(args, name)
    path = user_key_path(settings.home, name)
    if not path.exists():
        raise CliError(
            f"no identity {name!r} at {path}: devices are added and revoked with"
            f" {name}'s own key, on the device that holds it",
            code=EXIT_BAD_INPUT,
        )
    return settings, load_identity(str(path), args)


def _device_public(text: str, name: str) -> Any:
    """The device's public identity: the code ``devices init`` printed, or its .pub file."""
    from .. import canonical
    from .._encoding import b64decode
    from ..errors import SecureCommError
    from ..identity import PublicIdentity, read_public_file

    file = Path(text).is_file()
    try:
        if file:
            device = read_public_file(Path(text).read_bytes())
        else:
            device = PublicIdentity.from_json(
                canonical.loads(b64decode(text.strip(), field="DEVICE"), what="DEVICE")
            )
    except SecureCommError as exc:
        raise CliError(
            f"{text} is not a device's .pub file: {exc}"
            if file
            else "DEVICE is not a whole code from 'devices init' (cut short, or mistyped?)",
            hint="give the whole code 'securecomm devices init' printed on the device, or"
            " its .pub file",
            code=EXIT_BAD_INPUT,
        ) from None
    if device.name != name:
        raise CliError(f"that device's key was made for {device.name}, not {name}")
    return device


def _revoked(found: list[Any], fingerprint_hex: str) -> Any:
    """The device of ``found`` with this fingerprint if its person revoked it, else None."""
    return next(
        (d for d in found if d.fingerprint_hex == fingerprint_hex and d.revocation is not None),
        None,
    )


def cmd_init(args: argparse.Namespace) -> None:
    from .. import canonical
    from .._encoding import b64encode
    from ..client import devices, flows
    from ..client.devices import device_key_path, grant_path
    from ..client.trust import KnownKeys
    from ..identity import Identity, check_name, load_public, save_public
    from ..local.layout import user_key_path

    name = check_name(args.person, field="--as")
    settings = settings_of(args)
    if user_key_path(settings.home, name).exists():
        raise CliError(
            f"{settings.home} holds {name}'s own key: a device is another home (another"
            " machine) that joined the same network",
            code=EXIT_BAD_INPUT,
        )
    path = device_key_path(settings.home, name)
    listed = flows.listed(settings, name)
    if listed is None:
        raise CliError(f"no one named {name!r} is registered with the relay", code=EXIT_BAD_INPUT)
    known = KnownKeys.load(settings.home)
    known.check(listed)
    made = "this device's key"
    revoked = None
    if path.exists():
        # Run again (its code scrolled away, say): the code again, from the public half.
        device = load_public(path.with_suffix(".pub"))
        made += " (made before: this home is a device of theirs already)"
        revoked = _revoked(devices.devices(settings, listed), device.fingerprint_hex)
    if revoked is not None or not path.exists():
        secret = new_passphrase(args)
        identity = Identity.generate(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        identity.save(path, secret)
        if revoked is not None:
            # Of no use to anyone now (its person signed that), and what was sealed to it
            # opens with it: replaced, and that dropped, only once the new key is written.
            grant_path(settings.home, name).unlink(missing_ok=True)
            print(
                f"{name} revoked the key this home had ({device.short_fingerprint()}) on"
                f" {_when(revoked.revocation.revoked)}: a new key replaces it"
            )
            made = "this device's new key"
        device = identity.public
        save_public(path.with_suffix(".pub"), device)
    if known.pin(listed):
        known.save()
    code = b64encode(canonical.dumps(device.to_json()))
    print(f"{made}: {path} (fingerprint {device.short_fingerprint()})")
    print(f"{name}'s key, as the relay lists it: {listed.short_fingerprint()}")
    print(f"  compare it with what {name} sees; only a delegation by that key is taken")
    print(f"on {name}'s own device, run:")
    print(f"  securecomm devices add --as {name} --label LABEL {code}")
    print("then this home reads as them (it cannot send: envelopes take their own key)")


def cmd_add(args: argparse.Namespace) -> None:
    from ..client import devices

    name = args.person
    settings, person = _person_key(args, name)
    device = _device_public(args.device, name)
    listed = devices.devices(settings, person.public)
    revoked = _revoked(listed, device.fingerprint_hex)
    if revoked is not None:
        raise CliError(
            f"{name} revoked that device ({revoked.delegation.label!r},"
            f" {device.short_fingerprint()}) on {_when(revoked.revocation.revoked)}, and a"
            " revoked key stays revoked",
            hint=f"on the device, run 'securecomm devices init --as {name}' again: it makes a"
            " new key in place of the revoked one; add the code it prints",
        )
    # Added before (and not revoked): its delegation is replaced.
    before = next(
        (d.delegation.label for d in listed if d.fingerprint_hex == device.fingerprint_hex), None
    )
    delegation = devices.add(settings, person, device, args.label, args.lifetime)
    done = "added"
    if before is not None:
        done = "renewed" if before == delegation.label else f"renewed {before!r} as"
    print(
        f"{done} {delegation.label!r} ({device.short_fingerprint()}) for {name}"
        f" until {_when(delegation.expires)}"
    )
    print(f"it acts for {name} from its next command; revoke it with:")
    print(f"  securecomm devices revoke --as {name} {delegation.label!r}")


def _listed(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    from ..client import devices
    from ..client.trust import KnownKeys

    settings = settings_of(args, args.person)
    person = KnownKeys.load(settings.home).get(args.person)
    if person is None:
        raise CliError(f"no key is pinned for {args.person} in {settings.home}")
    return settings, devices.devices(settings, person)


def cmd_list(args: argparse.Namespace) -> None:
    _, found = _listed(args)
    if not found:
        print(f"{args.person} has added no device")
    now = int(time.time())
    for device in found:
        state = device.state(now)
        when = {
            "valid": f"until {_when(device.delegation.expires)}",
            "expired": f"expired {_when(device.delegation.expires)}",
            "revoked": f"revoked {_when(device.revocation.revoked)}" if device.revocation else "",
        }[state]
        print(
            f"  {device.delegation.label:<20} {device.delegation.device.short_fingerprint()}"
            f"  {when}"
        )


def _pick(found: list[Any], wanted: str) -> Any:
    """The device named by its label, or by its fingerprint (or a start of it)."""
    hex_digits = re.sub(r"\s", "", wanted).lower()
    by_label = [d for d in found if d.delegation.label == wanted]
    by_print = (
        [d for d in found if d.fingerprint_hex.startswith(hex_digits)]
        if re.fullmatch(r"[0-9a-f]{8,64}", hex_digits)
        else []
    )
    matches = by_label or by_print
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(f"{d.delegation.label!r}" for d in found) or "none"
    raise CliError(
        f"{'several' if matches else 'no'} devices match {wanted!r} (devices: {listed})",
        hint="name it by its label or by more of its fingerprint (securecomm devices list)",
        code=EXIT_BAD_INPUT,
    )


def cmd_revoke(args: argparse.Namespace) -> None:
    from ..client import devices

    _, found = _listed(args)
    chosen = _pick(found, args.device)
    settings, person = _person_key(args, args.person)
    label = chosen.delegation.label
    again = f"securecomm devices revoke --as {args.person} {label!r}"
    # The relay may hold it (and list the device as revoked) while custodians do not, and
    # serve the device: said, as a revocation that came short is.
    with finished_by_again(
        f"interrupted: {label!r} may not be revoked at every service yet; one that does not"
        " hold the revocation still serves it",
        again,
    ):
        failures = devices.revoke(settings, person, chosen.fingerprint_hex)
    reached = 1 + len(settings.custodians) - len(failures)
    if failures:
        lines = "\n".join(f"  {service}: {reason}" for service, reason in failures.items())
        raise CliError(
            f"{label!r} is revoked at {reached} of {1 + len(settings.custodians)} services;"
            f" not yet at:\n{lines}",
            hint=f"run it again: {again} (a service that holds it says so again)",
        )
    print(
        f"revoked {label!r} ({chosen.delegation.device.short_fingerprint()}) at the relay and"
        f" all {len(settings.custodians)} custodians: its requests are refused from now on"
    )
    print("what it read before stays read, and it still holds the key it was given")


def add_commands(sub: Any) -> None:
    verbs = command_group(
        sub,
        "devices",
        "let another device of yours act for you, and revoke it",
        "A device (another machine, its own home that joined the same network) makes a key"
        " of its own with 'devices init'; you let it act for you with 'devices add' (a"
        " delegation signed by your key, with an expiry, and your X25519 key sealed to the"
        " device so that it can open your shares); 'devices revoke' makes the relay and"
        " every custodian refuse it from then on. A device reads, lists your inbox and"
        " unsends; it does not send (an envelope is signed by your own key).",
    )
    p = verbs.add_parser(
        "init",
        help="make this home a device of NAME: its own key, and the code to add it",
        description="Make this device's key (a passphrase protects it, as for register)"
        " and print the code that NAME gives 'devices add' on their own device.",
    )
    p.add_argument("--as", dest="person", metavar="NAME", required=True, help="whose device")
    new_passphrase_options(p)
    home_option(p)
    p.set_defaults(func=cmd_init)

    p = verbs.add_parser(
        "add",
        help="let a device act for you until an expiry",
        description="Sign a delegation to DEVICE (the code 'devices init' printed there, or"
        " its .pub file) and hand it to the relay with your X25519 key sealed to the device;"
        " adding it again renews it. Takes your key file's passphrase (not an unlocked"
        " session: a delegation outlives it).",
    )
    p.add_argument("--as", dest="person", metavar="NAME", required=True, help="your name")
    p.add_argument("device", metavar="DEVICE", help="the device's code or .pub file")
    p.add_argument("--label", required=True, help="a name for the device, e.g. laptop")
    p.add_argument(
        "--for",
        dest="lifetime",
        type=parse_duration,
        default=parse_duration(DEFAULT_DELEGATION),
        metavar="DURATION",
        help=f"how long it may act for you (default {DEFAULT_DELEGATION}, at most a year)",
    )
    home_option(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_add)

    p = verbs.add_parser(
        "list",
        help="the devices of NAME, as the relay's directory lists them",
        description="List NAME's devices: label, fingerprint, and until when each may act"
        " (or when it expired or was revoked). Each entry is checked against NAME's pinned"
        " key.",
    )
    p.add_argument("--as", dest="person", metavar="NAME", required=True, help="whose devices")
    home_option(p)
    p.set_defaults(func=cmd_list)

    p = verbs.add_parser(
        "revoke",
        help="make the relay and every custodian refuse a device from now on",
        description="Sign a revocation of DEVICE (its label or fingerprint) and post it to"
        " the relay and to every custodian; each answers with a signed receipt. A service"
        " that could not be reached is named: run the same command again. Revoking does"
        " not unread what the device read, nor take back the key it was given.",
    )
    p.add_argument("--as", dest="person", metavar="NAME", required=True, help="your name")
    p.add_argument("device", metavar="DEVICE", help="the device's label or fingerprint")
    home_option(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_revoke)
