"""The devices file of the real target: which URL each device of a scenario answers at.

```yaml
plc1: modbus://10.0.0.5:502?unit=1
plc2: modbus://10.0.0.6:502?unit=3
```

Device names are the ones under `devices:` in the scenario files; the scenario still describes the
plant (its tag maps become the connections' tag databases), the file only says where it is.

Nothing resets real hardware between tests, so a device may also give the values its tags are written
to before each test that uses it:

```yaml
plc1:
  url: modbus://10.0.0.5:502?unit=1
  before_each: {setpoint: 50, running: false}   # tags of the scenario's tag map for plc1
```

A device whose URL's scheme takes connection arguments (OPC UA: security, mode, user, password,
certificate, private_key) may give them beside its URL; credentials never go in URLs. `password_env`
names an environment variable holding the password instead (so the file can be committed), and
certificate paths are relative to the devices file:

```yaml
hmi:
  url: opc.tcp://10.0.0.7:4840/plant
  security: Basic256Sha256
  mode: SignAndEncrypt
  user: operator
  password_env: RIG_OPCUA_PASSWORD
  certificate: pki/client.der
  private_key: pki/client.pem
```
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifrost._yaml import load_yaml
from bifrost.errors import ConfigError
from bifrost.tags import Value
from bifrost.urls import parse_url

EXAMPLE = "plc1: modbus://10.0.0.5:502?unit=1"
_OPTION_KEYS = ("security", "mode", "user", "password", "password_env", "certificate", "private_key")
_KEYS = ("url", "before_each", *_OPTION_KEYS)
_PATH_KEYS = ("certificate", "private_key")


class DevicesFileError(Exception):
    """The devices file is missing or malformed; the message lists every problem, file:line:col each."""


@dataclass(frozen=True)
class DevicesFile:
    """What a devices file says: each device's URL, and the tag values to write before each test."""

    urls: dict[str, str] = field(default_factory=dict)
    before_each: dict[str, dict[str, Value]] = field(default_factory=dict)
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    """Device name -> the keyword arguments of `bifrost.connect` beside its URL (OPC UA's security, user...)."""


def load_devices(path: Path) -> dict[str, str]:
    """Device name -> URL, every URL checked against the known schemes."""
    return read_devices_file(path).urls


def read_devices_file(path: Path) -> DevicesFile:
    """The whole devices file, checked: URLs against the known schemes, `before_each` values as scalars
    (their tag names are checked against the scenario when a test uses the device)."""
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
    found = DevicesFile()
    problems: list[str] = []

    def where(*keys: str) -> str:
        line, column = located.positions.get(tuple(keys), (1, 1))
        return f"{path}:{line}:{column}: {'.'.join(keys)}"

    for key, entry in data.items():
        name = str(key)
        url: Any = entry
        if isinstance(entry, dict):
            for unknown in [str(k) for k in entry if k not in _KEYS]:
                close = difflib.get_close_matches(unknown, _KEYS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                problems.append(
                    f"{where(name, unknown)}: unknown key; {hint}a device takes {', '.join(_KEYS[:-1])} and {_KEYS[-1]}"
                )
            url = entry.get("url")
            values = entry.get("before_each", {})
            if not isinstance(values, dict):
                problems.append(f"{where(name, 'before_each')}: expected a mapping of tag names to values")
            else:
                for tag, value in values.items():
                    if not isinstance(value, (bool, int, float, str)):
                        problems.append(f"{where(name, 'before_each', str(tag))}: expected a value (got {value!r})")
                if values:
                    found.before_each[name] = {str(tag): value for tag, value in values.items()}
            if url is None:
                problems.append(f"{where(name)}: a device needs its url: (e.g. url: modbus://10.0.0.5:502?unit=1)")
                continue
        if not isinstance(url, str):
            problems.append(f"{where(name)}: expected a URL string, as in `{EXAMPLE}` (got {url!r})")
            continue
        try:
            scheme, _ = parse_url(url)
        except ConfigError as exc:
            problems.append(f"{where(name)}: {exc}")
            continue
        if isinstance(entry, dict):
            options = _options(
                entry, scheme.name, scheme.options, path.parent, functools.partial(where, name), problems
            )
            if options:
                found.options[name] = options
        found.urls[name] = url
    if problems:
        raise DevicesFileError("\n".join(problems))
    return found


def _options(
    entry: dict[Any, Any], scheme: str, accepted: tuple[str, ...], base: Path, where: Any, problems: list[str]
) -> dict[str, str]:
    """The connection arguments a device gives beside its URL, checked against its scheme's."""
    out: dict[str, str] = {}
    for key in _OPTION_KEYS:
        if key not in entry:
            continue
        value = entry[key]
        target = "password" if key == "password_env" else key
        if target not in accepted:
            takes = ", ".join(accepted) or "none"
            problems.append(f"{where(key)}: {scheme}:// takes no connection argument {target!r} (its own: {takes})")
            continue
        if not isinstance(value, str) or not value:
            problems.append(f"{where(key)}: expected a string (got {value!r})")
            continue
        if key == "password_env":
            if "password" in entry:
                problems.append(f"{where(key)}: give password or password_env, not both")
                continue
            secret = os.environ.get(value)
            if secret is None:
                problems.append(f"{where(key)}: the environment variable {value} is not set")
                continue
            value = secret
        elif key in _PATH_KEYS:
            value = str((base / value).resolve())
        out[target] = value
    return out
