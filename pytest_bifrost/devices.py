"""The devices file of the real target: which URL each device of a scenario answers at.

```yaml
plc1: modbus://10.0.0.5:502?unit=1
plc2: modbus://10.0.0.6:502?unit=3
```

Device names are the ones under `devices:` in the scenario files; the scenario still describes the
plant (its tag maps become the connections' tag databases), the file only says where it is.
"""

from __future__ import annotations

from pathlib import Path

from bifrost._yaml import load_yaml
from bifrost.errors import ConfigError
from bifrost.urls import parse_url

EXAMPLE = "plc1: modbus://10.0.0.5:502?unit=1"


class DevicesFileError(Exception):
    """The devices file is missing or malformed; the message lists every problem, file:line:col each."""


def load_devices(path: Path) -> dict[str, str]:
    """Device name -> URL, every URL checked against the known schemes."""
    if not path.exists():
        raise DevicesFileError(f"{path}: no such devices file (a YAML mapping of device names to URLs: {EXAMPLE})")
    try:
        located = load_yaml(path)
    except ConfigError as exc:
        raise DevicesFileError(str(exc)) from None
    data = located.data
    if not isinstance(data, dict) or not data:
        got = "it is empty" if data is None or data == {} else f"got {type(data).__name__}"
        raise DevicesFileError(
            f"{path}:1:1: expected a mapping of device names to URLs, one a line, as in `{EXAMPLE}` ({got})"
        )
    devices: dict[str, str] = {}
    problems: list[str] = []
    for name, url in data.items():
        line, column = located.positions.get((str(name),), (1, 1))
        where = f"{path}:{line}:{column}: {name}"
        if not isinstance(url, str):
            problems.append(f"{where}: expected a URL string, as in `{EXAMPLE}` (got {url!r})")
            continue
        try:
            parse_url(url)
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
            continue
        devices[str(name)] = url
    if problems:
        raise DevicesFileError("\n".join(problems))
    return devices
