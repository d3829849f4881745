"""The storage backends the service tests run on: SQLite (each service's file in its own
home, the default) and PostgreSQL (a fresh database of the session's throwaway cluster
for each service, named in the config as its ``database_url``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tests.postgres import Cluster

__all__ = ["BACKENDS", "Backend"]

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Backend:
    name: str
    cluster: Cluster | None = None

    def __post_init__(self) -> None:
        if (self.name == "postgresql") != (self.cluster is not None):
            raise ValueError(f"backend {self.name}: a cluster is for postgresql only")

    def database_urls(self, services: Iterable[str]) -> dict[str, str]:
        """A new, empty database for each of ``services`` (on SQLite: none, each keeps its
        default file)."""
        if self.cluster is None:
            return {}
        return {service: self.cluster.database(service) for service in services}

    def __str__(self) -> str:
        return self.name
