"""Import a protocol's heavy dependency only when it is used, naming the extra that provides it."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise an ImportError that says which extra of bifrost installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module!r} is needed for this feature but is not installed; "
            f'install it with: pip install "bifrost[{extra}]"'
        ) from exc
