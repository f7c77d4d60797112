"""Our codec and framing against pymodbus's server, one request per function code it serves:
the frames we build are the frames it expects, and we decode what it answers."""

from __future__ import annotations

import socket

import pytest

from bifrost.modbus import pdu
from bifrost.modbus.framing import ClientConnection, ClientEvent, MalformedReply, Response

from .conftest import PymodbusPeer


def _event(peer: PymodbusPeer, request: pdu.RequestPdu) -> ClientEvent:
    conn = ClientConnection("mbap", unit=1)
    with socket.create_connection((peer.host, peer.port), timeout=5) as sock:
        sock.sendall(conn.send(request))
        while (event := conn.next_event()) is None:
            data = sock.recv(4096)
            assert data, "pymodbus closed the connection"
            conn.receive_data(data)
    return event


def _exchange(peer: PymodbusPeer, request: pdu.RequestPdu) -> pdu.ResponsePdu:
    event = _event(peer, request)
    assert isinstance(event, Response), event
    return event.response


@pytest.mark.parametrize(
    ("request_pdu", "expected"),
    [
        (pdu.ReadCoilsRequest(0, 5), pdu.ReadCoilsResponse((True, False, True, False, True))),
        (pdu.ReadDiscreteInputsRequest(0, 4), pdu.ReadDiscreteInputsResponse((True, False, False, True))),
        (pdu.ReadHoldingRegistersRequest(5, 3), pdu.ReadHoldingRegistersResponse((5, 6, 7))),
        (pdu.ReadInputRegistersRequest(1, 2), pdu.ReadInputRegistersResponse((1001, 1002))),
        (pdu.WriteSingleCoilRequest(3, True), pdu.WriteSingleCoilResponse(3, True)),
        (pdu.WriteSingleRegisterRequest(9, 0xBEEF), pdu.WriteSingleRegisterResponse(9, 0xBEEF)),
        (pdu.WriteMultipleCoilsRequest(10, (True, True, False)), pdu.WriteMultipleCoilsResponse(10, 3)),
        (pdu.WriteMultipleRegistersRequest(40, (1, 2, 3)), pdu.WriteMultipleRegistersResponse(40, 3)),
        (pdu.MaskWriteRegisterRequest(4, 0xF2, 0x25), pdu.MaskWriteRegisterResponse(4, 0xF2, 0x25)),
        (
            pdu.ReadWriteMultipleRegistersRequest(50, 2, 50, (11, 12)),
            pdu.ReadWriteMultipleRegistersResponse((11, 12)),
        ),
        (pdu.ReadHoldingRegistersRequest(300, 1), pdu.ExceptionResponse(3, pdu.ExceptionCode.ILLEGAL_DATA_ADDRESS)),
    ],
    ids=lambda case: type(case).__name__,
)
def test_each_function_code_against_pymodbus(
    pymodbus_server: PymodbusPeer, request_pdu: pdu.RequestPdu, expected: pdu.ResponsePdu
) -> None:
    assert _exchange(pymodbus_server, request_pdu) == expected


def test_mask_write_changes_the_register_as_the_spec_says(pymodbus_server: PymodbusPeer) -> None:
    # The specification's example: 0x12 with and-mask 0xF2, or-mask 0x25 becomes 0x17.
    _exchange(pymodbus_server, pdu.WriteSingleRegisterRequest(4, 0x12))
    _exchange(pymodbus_server, pdu.MaskWriteRegisterRequest(4, 0xF2, 0x25))
    assert pymodbus_server.registers(3, 4, 1) == [0x17]


def test_device_identification_decodes(pymodbus_server: PymodbusPeer) -> None:
    response = _exchange(pymodbus_server, pdu.ReadDeviceIdentificationRequest(1, 0))
    if isinstance(response, pdu.ExceptionResponse):
        # pymodbus answers FC43 only when given an identity; without one, a proper exception is right too.
        assert response.function == 43
    else:
        assert isinstance(response, pdu.ReadDeviceIdentificationResponse)


def test_pymodbus_answers_an_unknown_function_with_function_zero(pymodbus_server: PymodbusPeer) -> None:
    """pymodbus 3.16 answers function 0x41 with `80 01`: exception 1 to function 0, which is no function.
    We report that reply as malformed (an engine raises ProtocolError) rather than guess what it meant;
    our own simulator answers `C1 01`, exception 1 to the function asked."""
    event = _event(pymodbus_server, pdu.UnsupportedRequest(0x41, b"\x00"))
    assert isinstance(event, MalformedReply)
    assert event.pdu == b"\x80\x01"
