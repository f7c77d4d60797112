"""The device most command-line tests talk to: a served scenario on a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators import SimHost


@pytest.fixture
def plant() -> Iterator[SimHost]:
    """The shipped water tank on a virtual clock: values hold still until a test moves them."""
    with SimHost("water_tank", clock="virtual", any_port=True) as host:
        yield host
