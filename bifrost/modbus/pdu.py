"""Modbus PDUs: requests and responses, encoded and decoded. No I/O.

(Being written: the limits below are the contract the planner already relies on.)
"""

from __future__ import annotations

MAX_READ_REGISTERS = 125
MAX_WRITE_REGISTERS = 123
MAX_READ_BITS = 2000
MAX_WRITE_BITS = 1968
MAX_RW_READ_REGISTERS = 125  # FC23, read half
MAX_RW_WRITE_REGISTERS = 121  # FC23, write half
ADDRESS_SPACE = 65536
