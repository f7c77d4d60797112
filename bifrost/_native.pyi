"""Stubs of the Rust extension module `bifrost._native` (checked by mypy.stubtest)."""

__all__ = ["__version__", "decode", "encode"]

__version__: str

def decode(
    words: list[int],
    dtype: str,
    byte_order: str = "ABCD",
    *,
    length: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    bit: int | None = None,
) -> bool | int | float | str: ...
def encode(
    value: bool | int | float | str,
    dtype: str,
    byte_order: str = "ABCD",
    *,
    length: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    bit: int | None = None,
    current: int = 0,
) -> list[int]: ...
