"""The one distribution: its wheel holds the three packages, the scenarios and the Rust extension."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    maturin = shutil.which("maturin")
    if maturin is None:
        pytest.fail("maturin is a dev dependency: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("wheel")
    # --release reuses the artifacts of the editable install (also a release build), so this only packs.
    # Serialised: under `-n 2` each xdist worker that runs a test of this module builds the wheel, and
    # maturin copies the extension into target/maturin/ outside cargo's own lock, so two builds at once
    # (or one beside another cargo build) once failed to open target/maturin/lib_native.so. A target
    # directory of its own would avoid the lock but rebuild every crate from nothing: minutes, not seconds.
    lock_path = ROOT / "target" / "bifrost-wheel.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        subprocess.run([maturin, "build", "--release", "--quiet", "--out", str(out)], cwd=ROOT, check=True)
    (built,) = out.glob("bifrost-*.whl")
    return built


def test_wheel_holds_packages_scenarios_and_extension(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("bifrost", "simulators", "pytest_bifrost"):
        assert f"{package}/__init__.py" in names
        assert f"{package}/py.typed" in names
    assert any(name.startswith("bifrost/_native") and name.endswith((".so", ".pyd")) for name in names)
    assert "bifrost/_native.pyi" in names
    shipped = {Path(name).name for name in names if name.startswith("scenarios/")}
    assert {path.name for path in (ROOT / "scenarios").iterdir() if path.is_file()} <= shipped
    assert not any(name.startswith(("tests/", "rust/", "bench/")) for name in names)


def test_installed_wheel_finds_its_scenarios_and_extension(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    probe = (
        "import bifrost._native, simulators, pytest_bifrost, pathlib;"
        "print(pathlib.Path(simulators.__file__).parent.parent);"
        "print(' '.join(sorted(simulators.shipped_scenarios())));"
        "print(bifrost._native.decode([0x42F6, 0xE979], 'float32'))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    where, scenarios, decoded = result.stdout.splitlines()
    assert Path(where) == target
    assert "water_tank" in scenarios.split()
    assert float(decoded) == pytest.approx(123.456, rel=1e-6)


def test_distribution_metadata() -> None:
    dist = distribution("bifrost")
    assert dist.metadata["Requires-Python"] == ">=3.10"
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert {"opcua", "s7", "cloud", "analytics", "pcap", "all", "dev"} <= extras
    scripts = {
        ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.dist and ep.dist.name == "bifrost"
    }
    assert scripts == {"bifrost": "bifrost.cli:main", "bifrost-sim": "simulators.cli:main"}
    plugins = [ep for ep in entry_points(group="pytest11") if ep.name == "pytest_bifrost"]
    assert [ep.value for ep in plugins] == ["pytest_bifrost"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = [block.split("```", 1)[0].strip() for block in readme.split("```sh\n")[1:]]
    assert len(blocks) == 2, "the README keeps exactly two set-up commands: serve, and test"
    test_command = next(block for block in blocks if "pytest" in block)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_tox_runs_the_suite_on_every_supported_python_and_lint_and_typing() -> None:
    # tox itself is not a dev dependency (nox is the project's runner; `pip install tox` to use it):
    # this holds its native-TOML table to the interpreters the project supports and to nox's sessions.
    tomllib = pytest.importorskip("tomllib")
    tox = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["tox"]
    assert tox["requires"] == ["tox>=4.21"] and tox["skip_missing_interpreters"] is True
    supported = [f"3.{minor}" for minor in range(10, 14)]  # requires-python >=3.10, up to the newest
    assert tox["env_list"] == [*supported, "lint", "typing"]
    assert tox["env_run_base"]["extras"] == ["dev"]
    assert tox["env_run_base"]["commands"][0][:3] == ["pytest", "-n", "2"]
    lint = [" ".join(command) for command in tox["env"]["lint"]["commands"]]
    noxfile = (ROOT / "noxfile.py").read_text()
    for command in lint:  # the same checks as `nox -s lint`
        assert ", ".join(f'"{part}"' for part in command.split()) in noxfile, command
    assert "`pip install tox`" in (ROOT / "README.md").read_text()  # the README names it
