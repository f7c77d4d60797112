"""Developer sessions. `nox --no-venv -s NAME` reuses the current environment (after `pip install -e ".[dev]"`)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typing", "rust"]
PACKAGES = ["bifrost", "simulators", "pytest_bifrost"]


def _install(session: nox.Session, extras: str = "dev") -> None:
    if not isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The Python suite, on both cores, with branch coverage."""
    _install(session)
    session.run(
        "python", "-m", "pytest", "-n", "2", "--cov", "--cov-report=term-missing:skip-covered", *session.posargs
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, rustfmt and clippy (warnings are errors)."""
    _install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("cargo", "fmt", "--all", "--check", external=True)
    session.run("cargo", "clippy", "--workspace", "--all-targets", "--release", "--", "-D", "warnings", external=True)


@nox.session
def typing(session: nox.Session) -> None:
    """mypy strict on the three packages, and stubtest of bifrost._native against its .pyi."""
    _install(session)
    session.run("python", "-m", "mypy", *PACKAGES)
    session.run("python", "-m", "mypy.stubtest", "bifrost._native")


@nox.session
def rust(session: nox.Session) -> None:
    """cargo test of the pure crates."""
    session.run("cargo", "test", "--release", "--workspace", "--exclude", "bifrost-py", external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark in bench/, each printing a ratio against a peer measured in the same run."""
    _install(session, "dev,bench")
    scripts = sorted(Path("bench").glob("bench_*.py"))
    for script in scripts:
        session.run("python", str(script), *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Run the documentation's examples (they are also part of the test suite)."""
    _install(session)
    session.run("python", "-m", "pytest", "tests/test_docs.py", "-q")
