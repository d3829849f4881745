"""What a custodian's operator does before the custodian first starts, for tests that
start custodians on a bare home: make a key (as `securecomm keygen` would, on the
operator's own machine) and give the custodian's home its public half. A custodian
never makes its operator's key itself."""

from __future__ import annotations

from securecomm.config import Settings
from securecomm.identity import Identity, load_or_create, save_public
from securecomm.local.home import operator_name


def provide_operator(settings: Settings, name: str) -> Identity:
    operator = load_or_create(
        settings.home / "operators" / f"{operator_name(name)}.key", operator_name(name)
    )
    pub = settings.custodian_dir(name) / "operator.pub"
    if not pub.exists():
        pub.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        save_public(pub, operator.public)
    return operator
