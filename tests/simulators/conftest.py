"""Helpers for the simulator tests: a test rig scenario, hosts on port 0, and a raw Modbus client."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bifrost.modbus import framing, pdu
from simulators.hooks import NoFaults, Reader, Writer
from simulators.host import SimHost
from simulators.scenario import Scenario, load_scenario

RIG = """\
scenario: rig
description: every tag type on every area, two units on one listener
seed: 1
clock: {tick: 100ms}
tags:
  run:    {type: bool, writable: true}
  ready:  {type: bool, init: true}
  level:  {type: float32, init: 12.5, writable: true}
  count:  {type: int32, init: -2, writable: true}
  speed:  {type: uint16, init: 300, writable: true}
  fixed:  {type: uint16, init: 7}
  name:   {type: "string[6]", init: ab, writable: true}
  flag1:  {type: bool, writable: true}
  flag2:  {type: bool, init: true}
  big:    {type: float32, init: 5000.0, writable: true}
  total:  {type: float64, init: 1.25, writable: true}
  small:  {type: int16, init: 1, writable: true}
  temp:   {type: float32, init: 21.5}
  ramp:   {type: float32, behaviour: {ramp: {to: 100, over: 100s}}}
devices:
  plc1:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 1
    map:
      run: coil:0
      ready: di:0
      level: hr:0
      count: {address: hr:2, byte_order: CDAB}
      speed: hr:4
      fixed: hr:5
      name: hr:6
      flag1: hr:10.0
      flag2: hr:10.3
      big: {address: hr:11, type: int16, scale: 0.1}
      total: hr:12
      small: {address: hr:16, type: uint16}
      temp: {address: ir:0, type: int16, scale: 0.1}
      ramp: ir:1
  plc2:
    protocol: modbus
    listen: 127.0.0.1:0
    unit: 2
    map:
      speed: hr:0
      temp: ir:0
"""


def rig_scenario(text: str = RIG) -> Scenario:
    return load_scenario(Path("rig.yaml"), text=text)


class PassThrough(NoFaults):
    """Hooks that wrap every connection's streams without changing them: the server's stream path."""

    def __init__(self) -> None:
        self.wrapped: list[str] = []

    def wrap(self, reader: Reader, writer: Writer, device: str) -> tuple[Reader, Writer]:
        self.wrapped.append(device)
        return _Reader(reader), _Writer(writer)


class _Reader:
    def __init__(self, inner: Reader) -> None:
        self.inner = inner

    async def read(self, n: int = -1) -> bytes:
        return await self.inner.read(n)


class _Writer:
    def __init__(self, inner: Writer) -> None:
        self.inner = inner

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    async def drain(self) -> None:
        await self.inner.drain()

    def close(self) -> None:
        self.inner.close()

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)


@pytest.fixture(params=["raw", "streams"])
def rig(request: pytest.FixtureRequest) -> Iterator[SimHost]:
    """The rig on a virtual clock, served on the fast path and through pass-through stream wrappers."""
    hooks = PassThrough() if request.param == "streams" else None
    with SimHost(rig_scenario(), clock="virtual", hooks=hooks) as host:
        yield host


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("?")[0].rsplit(":", 1)[1])


class Wire:
    """A blocking Modbus client over a raw socket, built on bifrost's framing: exact control of the bytes."""

    def __init__(self, url: str, framing_kind: framing.Framing = "mbap", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = framing.ClientConnection(framing_kind)

    def call(self, request: pdu.RequestPdu, unit: int = 1) -> pdu.ResponsePdu:
        self.sock.sendall(self.conn.send(request, unit=unit))
        event = self.next_event()
        assert isinstance(event, framing.Response), event
        return event.response

    def next_event(self) -> framing.ClientEvent:
        while True:
            event = self.conn.next_event()
            if event is not None:
                return event
            data = self.sock.recv(4096)
            assert data, "the simulator closed the connection"
            self.conn.receive_data(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_peer(self) -> bool:
        """Whether the server closed the connection (reads until the end of the stream)."""
        try:
            while self.sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
