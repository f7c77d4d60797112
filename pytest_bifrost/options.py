"""Every command-line option, ini key and marker of the plugin, declared once, and the checked
`Settings` of a run that they add up to.

An option `--bifrost-X` always has the ini key `bifrost_X`; the command line wins over the ini file,
which wins over the default. Paths on the command line are relative to where pytest was started,
paths in an ini file to the ini file's folder (as pytest does for its own path settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import pytest

if TYPE_CHECKING:
    from bifrost.tags import Value

Target = Literal["sim", "real"]
RECORD_MODES: tuple[str, ...] = ("none", "once", "new_episodes", "all")
ClockKind = Literal["virtual", "system"]
MqttBrokerKind = Literal["auto", "mosquitto", "amqtt"]


@dataclass(frozen=True)
class Option:
    """One setting: `--bifrost-{key}` on the command line, `bifrost_{key}` in the ini file (dashes as
    underscores)."""

    key: str
    metavar: str
    help: str
    choices: tuple[str, ...] | None = None
    default: str | None = None
    is_path: bool = False

    @property
    def flag(self) -> str:
        return "--bifrost-" + self.key

    @property
    def ini(self) -> str:
        return "bifrost_" + self.key.replace("-", "_")

    @property
    def dest(self) -> str:
        return "bifrost_" + self.key.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option(
        "scenarios",
        "DIR",
        "folder of scenario files that @pytest.mark.bifrost_scenario('stem') looks in before the shipped ones",
        is_path=True,
    ),
    Option(
        "target",
        "sim|real",
        "sim: start each scenario's devices as simulators (default); real: use the devices file's URLs, start nothing",
        choices=("sim", "real"),
        default="sim",
    ),
    Option(
        "devices",
        "FILE",
        "YAML file mapping device names to the URLs of real devices (plc1: modbus://10.0.0.5:502?unit=1); "
        "read with --bifrost-target=real",
        is_path=True,
    ),
    Option("seed", "N", "seed every scenario with N instead of the seed in its file"),
    Option(
        "clock",
        "virtual|system",
        "virtual: plant time moves only when a test advances it (default); system: it follows the wall clock",
        choices=("virtual", "system"),
        default="virtual",
    ),
    Option(
        "mqtt-broker",
        "auto|mosquitto|amqtt",
        "the broker bifrost_mqtt_broker runs: mosquitto (a child process), amqtt (in-process), or auto "
        "(mosquitto when installed, else amqtt; the default)",
        choices=("auto", "mosquitto", "amqtt"),
        default="auto",
    ),
    Option(
        "record-mode",
        "|".join(RECORD_MODES),
        "what @pytest.mark.bifrost_cassette does (vcrpy's modes): none replays (default); once records a missing "
        "cassette; new_episodes appends what the cassette cannot answer; all records again. On the command line "
        "it wins over the marker's record_mode",
        choices=RECORD_MODES,
    ),
    Option(
        "host",
        "URL",
        "drive the `bifrost-sim serve --control` at URL (its control API) instead of starting simulators here; "
        "it must serve the scenario the tests are marked with (a token comes from BIFROST_CONTROL_TOKEN)",
    ),
)

# name(args) -> what it does; registered in pytest_configure so that --strict-markers accepts them.
MARKERS: Mapping[str, str] = {
    "bifrost_scenario(name_or_path)": (
        "the scenario bifrost_plant runs: a file stem looked up in --bifrost-scenarios, then among the "
        "shipped scenarios; or a path to a scenario file (relative to the test file). The closest mark wins."
    ),
    "bifrost_sim_only(reason=None)": "skip this test under --bifrost-target=real: it needs a simulated plant",
    "bifrost_cassette(path, record_mode=None, target=None, device='plc1', mode='request', timing='fast', speed=1, "
    "unknown=2)": (
        "the cassette the bifrost_cassette fixture replays or records (a JSONL file, relative to the test file); "
        "record_mode is one of none, once, new_episodes, all (see docs/replay.md)"
    ),
}


@dataclass(frozen=True)
class Settings:
    """The plugin's settings for one run, checked once at configure time."""

    target: Target = "sim"
    clock: ClockKind = "virtual"
    seed: int | None = None
    scenarios_dir: Path | None = None
    devices_file: Path | None = None
    # Device name -> URL; read only for the real target, so a CI run need not have the rig's file.
    devices: Mapping[str, str] = field(default_factory=dict)
    # Device name -> tag values written before each test that uses the device (real target only).
    before_each: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)
    # Device name -> bifrost.connect's arguments beside the URL (OPC UA security, user...; real target only).
    connect_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    mqtt_broker: MqttBrokerKind = "auto"
    record_mode: str | None = None
    """--bifrost-record-mode or the ini key; None: the marker's record_mode, else "none"."""
    record_mode_given: str | None = None
    """The record mode given on the command line (it wins over the marker)."""
    host_url: str | None = None  # --bifrost-host: a remote `serve --control`

    @property
    def real(self) -> bool:
        return self.target == "real"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("bifrost", "Bifrost virtual plants and real devices")
    for option in OPTIONS:
        group.addoption(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            choices=option.choices,
            default=None,
            help=option.help,
        )
        default = f" (default {option.default})" if option.default else ""
        parser.addini(option.ini, f"{option.help}{default}; {option.flag} overrides it", type="string", default="")


def _raw(config: pytest.Config, option: Option) -> tuple[str | None, str, Path]:
    """The option's value as given, where it was given (for messages), and the folder it is relative to."""
    given = config.getoption(option.dest)
    if given is not None:
        return str(given), option.flag, config.invocation_params.dir
    from_ini = str(config.getini(option.ini) or "").strip()
    if from_ini:
        where = f"{option.ini} in {config.inipath}" if config.inipath else option.ini
        base = config.inipath.parent if config.inipath else config.rootpath
        return from_ini, where, base
    return option.default, option.flag, config.invocation_params.dir


def read_settings(config: pytest.Config) -> Settings:
    """Settings from the command line and ini file; a value that cannot work is a pytest.UsageError."""
    given = {option.key: (option, *_raw(config, option)) for option in OPTIONS}
    for option, raw, where, _ in given.values():
        if raw is not None and option.choices is not None and raw not in option.choices:
            raise pytest.UsageError(f"{where}={raw!r}: expected one of {', '.join(option.choices)}")

    def path(key: str) -> Path | None:
        _, raw, _, base = given[key]
        return None if raw is None else (base / raw).resolve()

    seed: int | None = None
    _, raw_seed, seed_where, _ = given["seed"]
    if raw_seed is not None:
        try:
            seed = int(raw_seed)
        except ValueError:
            raise pytest.UsageError(f"{seed_where}={raw_seed!r}: expected a whole number") from None

    scenarios_dir = path("scenarios")
    if scenarios_dir is not None and not scenarios_dir.is_dir():
        raise pytest.UsageError(f"{given['scenarios'][2]}: {scenarios_dir} is not a folder of scenario files")

    target = cast(Target, given["target"][1])
    devices_file = path("devices")
    devices: Mapping[str, str] = {}
    before_each: Mapping[str, Mapping[str, Value]] = {}
    connect_options: Mapping[str, Mapping[str, str]] = {}
    if target == "real":
        if devices_file is None:
            raise pytest.UsageError(
                "--bifrost-target=real needs a devices file naming each device's URL: "
                "--bifrost-devices FILE (or bifrost_devices in the ini file), e.g. a YAML file with "
                "`plc1: modbus://10.0.0.5:502?unit=1`"
            )
        from pytest_bifrost.devices import DevicesFileError, read_devices_file

        try:
            read = read_devices_file(devices_file)
        except DevicesFileError as exc:
            raise pytest.UsageError(f"{given['devices'][2]}: {exc}") from None
        devices, before_each, connect_options = read.urls, read.before_each, read.options

    record_mode = given["record-mode"][1]
    from_command_line = config.getoption(given["record-mode"][0].dest)
    return Settings(
        record_mode=record_mode,
        record_mode_given=None if from_command_line is None else str(from_command_line),
        target=target,
        clock=cast(ClockKind, given["clock"][1]),
        seed=seed,
        scenarios_dir=scenarios_dir,
        devices_file=devices_file,
        devices=devices,
        before_each=before_each,
        connect_options=connect_options,
        mqtt_broker=cast(MqttBrokerKind, given["mqtt-broker"][1]),
        host_url=given["host"][1],
    )
