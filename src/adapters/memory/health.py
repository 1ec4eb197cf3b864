from __future__ import annotations

from application.ports import HealthProbe
from domain.model import DependencyHealth


class StaticHealthProbe(HealthProbe):
    """A dependency whose health is known without asking: in-process, or not configured."""

    def __init__(self, name: str, status: str = "up") -> None:
        self.name = name
        self._health = DependencyHealth(status=status)

    async def check(self) -> DependencyHealth:
        return self._health
