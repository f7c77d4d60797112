"""The Connection ABC: one async API for every protocol and engine."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any

from bifrost.errors import ConfigError
from bifrost.tags import DataPoint, Tag, TagMap, Value


class Connection(ABC):
    """A connection to one device. Use `async with connect(url) as plc:` (or `plc = await connect(url)`).

    `tag` arguments are names from the connection's TagMap, or raw protocol addresses
    (for Modbus `hr:10:float32:CDAB`).
    """

    def __init__(self, url: str, *, tags: TagMap | None = None, timeout: float = 3.0) -> None:
        self.url = url
        self.tags = tags if tags is not None else TagMap()
        self.timeout = timeout

    async def __aenter__(self) -> Connection:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, Connection]:
        return self.__aenter__().__await__()

    @abstractmethod
    async def open(self) -> None:
        """Connect; raises ConnectError naming the device when it cannot."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect. Safe to call twice."""

    @abstractmethod
    async def read(self, tag: str) -> DataPoint:
        """Read one tag."""

    async def read_many(self, tags: Iterable[str]) -> dict[str, DataPoint]:
        """Read several tags; engines override this to plan the fewest requests."""
        return {name: await self.read(name) for name in tags}

    @abstractmethod
    async def write(self, tag: str, value: Value) -> None:
        """Write one tag."""

    def describe(self, tag: str) -> Tag:
        """The Tag a name of the tag map or a raw address stands for: its type, address and whether it
        may be written. Protocols that take raw addresses override this; a ConfigError names the tag."""
        found = self.tags.get(tag)
        if found is None:
            known = ", ".join(sorted(self.tags)) or "none"
            raise ConfigError(f"{tag!r} is not a tag of this connection (tags: {known})")
        return found

    def preview_write(self, tag: str, value: Value) -> list[str]:
        """The requests `write(tag, value)` would send, described (hex and decoded), without sending them.
        A value the tag cannot hold is refused here as it would be by `write`."""
        raise ConfigError(f"{type(self).__name__} cannot show a write without sending it")

    async def write_many(self, values: Mapping[str, Value]) -> None:
        """Write several tags, in the order given."""
        for name, value in values.items():
            await self.write(name, value)

    async def subscribe(
        self, tags: Iterable[str], *, interval: float = 1.0, deadband: float = 0.0
    ) -> AsyncIterator[dict[str, DataPoint]]:
        """Poll `tags` every `interval` seconds and yield the points that changed by more than `deadband`.

        The first batch holds every tag. Engines may override this with a poll loop of their own.
        """
        names = list(tags)
        last: dict[str, Value | None] = {}
        while True:
            points = await self.read_many(names)
            changed = {
                name: point
                for name, point in points.items()
                if name not in last or _changed(last[name], point.value, deadband)
            }
            for name, point in changed.items():
                last[name] = point.value
            if changed:
                yield changed
            await asyncio.sleep(interval)


def _changed(old: Value | None, new: Value | None, deadband: float) -> bool:
    numeric = (int, float)
    if isinstance(old, numeric) and isinstance(new, numeric) and not isinstance(old, bool):
        return abs(new - old) > deadband
    return old != new
