"""S7 recorded and replayed: python-snap7's server recorded through the proxy, a python-snap7 capture
imported, a simulated CPU's traffic saved; each replayed as a virtual PLC to python-snap7's client."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bifrost.s7 import pdu
from simulators.host import SimHost
from simulators.recording import Cassette, load_cassette
from simulators.recording.codec import codec_for
from simulators.recording.diff import diff_cassettes
from simulators.recording.importer import import_capture
from simulators.recording.record import save_traffic
from simulators.recording.replay import Replayer
from simulators.recording.serve import misses, replay_scenario
from simulators.shipped import shipped_scenario

from .conftest import Conversation, write_pcap

snap7 = pytest.importorskip("snap7")
from snap7.error import S7Error  # noqa: E402
from snap7.type import Areas, SrvArea, WordLen  # noqa: E402 - only once python-snap7 is known to be there

CLI = [sys.executable, "-c", "from simulators.cli import main; main()"]
S7 = codec_for("s7")


@pytest.fixture(autouse=True)
def _quiet_snap7() -> None:
    logging.getLogger("snap7").setLevel(logging.CRITICAL)


def _port(url: str) -> int:
    return int(url.split("//")[1].split("?")[0].rsplit(":", 1)[1])


@contextmanager
def snap7_server() -> Iterator[int]:
    """python-snap7's server: DB1 holds 0..31, DB2 8 zero bytes, M 16 bytes with MB2 = 0xA5."""
    server = snap7.server.Server(log=False)
    areas = {"db1": bytearray(range(32)), "db2": bytearray(8), "mk": bytearray(16)}
    areas["mk"][2] = 0xA5
    server.register_area(SrvArea.DB, 1, areas["db1"])
    server.register_area(SrvArea.DB, 2, areas["db2"])
    server.register_area(SrvArea.MK, 0, areas["mk"])
    server.start(tcp_port=0)
    try:
        yield int(server.server_socket.getsockname()[1])
    finally:
        server.stop()


@contextmanager
def connected(port: int) -> Iterator[object]:
    client = snap7.Client()
    client.connect("127.0.0.1", 0, 1, port)
    try:
        yield client
    finally:
        client.disconnect()


def _first_line(process: subprocess.Popen[bytes]) -> bytes:
    assert process.stdout is not None
    fd, buffer = process.stdout.fileno(), b""
    deadline = time.monotonic() + 20
    while b"\n" not in buffer:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "the command printed nothing in time"
        chunk = os.read(fd, 4096)
        assert chunk, f"the command ended: {process.stderr.read().decode() if process.stderr else ''}"
        buffer += chunk
    return buffer.partition(b"\n")[0]


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=20)


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=20)
    return process.returncode


def session(client: object) -> list[bytes]:
    """What the client reads of the device: DB1, M, a write, DB1 again, a bit write, DB2."""
    c: object = client
    seen = [bytes(c.db_read(1, 0, 8)), bytes(c.read_area(Areas.MK, 0, 0, 4))]  # type: ignore[attr-defined]
    c.db_write(1, 4, bytearray(b"\xbe\xef"))  # type: ignore[attr-defined]
    seen.append(bytes(c.db_read(1, 0, 8)))  # type: ignore[attr-defined]
    c.write_area(Areas.DB, 2, 8 * 1 + 3, bytearray(b"\x01"), WordLen.Bit)  # type: ignore[attr-defined]
    seen.append(bytes(c.read_area(Areas.DB, 2, 0, 2)))  # type: ignore[attr-defined]
    return seen


# --- the judged path: python-snap7's server recorded through the proxy, replayed by the command ---------


def test_recorded_through_the_proxy_from_snap7_then_replayed_by_the_command(tmp_path: Path) -> None:
    cassette = tmp_path / "cpu.jsonl"
    with snap7_server() as port, running(
        "record", "--protocol", "s7", "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{port}",
        "-o", str(cassette), "--device", "cpu1",
    ) as recorder:  # fmt: skip
        listen = int(_first_line(recorder).decode().strip().rsplit(":", 1)[1])
        with connected(listen) as client:
            live = session(client)
        assert _stop(recorder) == 0
    assert live[0] == bytes(range(8)) and live[1] == b"\x00\x00\xa5\x00"
    assert live[2] == bytes((0, 1, 2, 3, 0xBE, 0xEF, 6, 7))
    recorded = load_cassette(cassette)
    texts = [entry.describe().split(": ", 1)[1] for entry in recorded]
    assert texts[1] == "read DB1.DBB0 x8 -> 00 01 02 03 04 05 06 07"
    assert texts[3] == "write DB1.DBB4 x2 = be ef -> ok"
    assert [entry.unit for entry in recorded] == [1] * len(recorded)  # rack 0, slot 1, from the COTP connect
    assert all(entry.latency is not None for entry in recorded)

    with running("replay", str(cassette), "--json") as replay:
        url = json.loads(_first_line(replay))["devices"]["cpu1"]["url"]
        assert url.endswith("?rack=0&slot=1")
        with connected(_port(url)) as client:
            assert session(client) == live  # the recorded values, the write's effect included
            with pytest.raises(S7Error, match=r"0x0a"):
                client.db_read(7, 0, 2)  # type: ignore[attr-defined]  # never recorded
        assert _stop(replay) == 0


# --- a capture of python-snap7's client and server (tests/data/s7/replay_session.pcap) ---------------------


def test_a_snap7_capture_on_another_port_is_imported_and_each_request_gets_its_captured_answer(
    data: Path, tmp_path: Path
) -> None:
    cassette, report = import_capture(data / "s7" / "replay_session.pcap")
    assert [c.framing for c in report.connections] == ["s7"] and report.unanswered == report.unmatched == 0
    assert [entry.protocol for entry in cassette] == ["s7"] * 7
    assert pdu.decode_request(cassette.entries[0].request)[1] == pdu.SetupRequest(480, 1, 1)
    captured = [pdu.decode_response(e.response)[1] for e in cassette.entries[1:] if e.response is not None]
    path = cassette.save(tmp_path / "capture.jsonl")
    with SimHost(replay_scenario(path, mode="strict"), any_port=True) as host:
        name = next(iter(host.devices))
        with connected(_port(host.url(name))) as client:
            seen = session(client)
        assert misses(host) == []
        logged = [exchange.response for exchange in host.devices[name].log.entries()][1:]  # after the setup
    reads = [answer for answer in captured if isinstance(answer, pdu.ReadResponse)]
    assert seen == [answer.items[0].data for answer in reads]
    assert logged == captured  # every request answered as captured, in order


def test_strict_mode_refuses_a_request_out_of_the_recorded_order(data: Path) -> None:
    cassette, _ = import_capture(data / "s7" / "replay_session.pcap")
    replayer = Replayer(cassette, mode="strict")
    write = cassette.entries[3].request
    answer = replayer.answer(1, write)  # the cassette's next one is a read of DB1
    assert answer.source == "miss" and "read DB1.DBB0 x8" in (answer.note or "")
    reference, refused = pdu.decode_response(answer.response or b"")
    assert reference == pdu.decode_request(write)[0] and refused == pdu.WriteResponse((0x0A,))


def test_by_request_ignores_the_pdu_reference_and_answers_with_the_live_one(data: Path) -> None:
    cassette, _ = import_capture(data / "s7" / "replay_session.pcap")
    read = pdu.ReadRequest((pdu.VarSpec(pdu.Area.FLAGS, 0, 4),))
    asked = pdu.encode_request(0x4242, read)
    assert S7.match_key(1, asked) == S7.match_key(1, cassette.entries[2].request)
    answer = Replayer(cassette).answer(1, asked)
    assert answer.source == "recorded" and answer.response is not None
    assert pdu.decode_response(answer.response)[1].items[0].data == b"\x00\x00\xa5\x00"  # type: ignore[union-attr]


# --- the learned image ---------------------------------------------------------------------------------------


def test_image_mode_answers_unrecorded_reads_from_what_the_capture_showed(data: Path, tmp_path: Path) -> None:
    cassette, _ = import_capture(data / "s7" / "replay_session.pcap")
    path = cassette.save(tmp_path / "capture.jsonl")
    with SimHost(replay_scenario(path, mode="image"), any_port=True) as host:
        with connected(_port(host.url(next(iter(host.devices))))) as client:
            c: object = client
            assert bytes(c.db_read(1, 3, 3)) == b"\x03\xbe\xef"  # type: ignore[attr-defined]  # never asked so
            assert bytes(c.read_area(Areas.MK, 0, 2, 1)) == b"\xa5"  # type: ignore[attr-defined]
            c.db_write(1, 0, bytearray(b"\x55"))  # type: ignore[attr-defined]  # a byte the capture showed
            assert bytes(c.db_read(1, 0, 2)) == b"\x55\x01"  # type: ignore[attr-defined]
            with pytest.raises(S7Error, match=r"0x0a"):
                c.db_read(1, 6, 4)  # type: ignore[attr-defined]  # bytes 8..9 were never seen
            with pytest.raises(S7Error):
                c.db_write(1, 20, bytearray(b"\x01"))  # type: ignore[attr-defined]  # nor byte 20
        assert [miss.reason.startswith("never recorded") for miss in misses(host)] == [True, True]


@pytest.mark.parametrize(
    ("unknown", "expected"),
    [(0x05, pdu.ReadResponse((pdu.ItemData(0x05, pdu.DataTransport.NULL),))), (0x85, None)],
)
def test_what_the_cassette_cannot_answer_gets_the_configured_s7_error(
    data: Path, unknown: int, expected: pdu.ResponsePdu | None
) -> None:
    cassette, _ = import_capture(data / "s7" / "replay_session.pcap")
    asked = pdu.encode_request(9, pdu.ReadRequest((pdu.VarSpec(pdu.Area.DB, 0, 2, db=5),)))
    answer = Replayer(cassette, mode="image", unknown=unknown).answer(1, asked)
    reference, response = pdu.decode_response(answer.response or b"")
    assert reference == 9
    if expected is None:  # an error class refuses the job as a whole
        assert isinstance(response, pdu.ErrorResponse) and response.error_class == 0x85
    else:
        assert response == expected


# --- a simulated CPU's traffic log, timing, diff --------------------------------------------------------------


def test_a_simulated_cpus_traffic_replays_the_same(tmp_path: Path) -> None:
    cassette = tmp_path / "cpu1.jsonl"
    with SimHost(shipped_scenario("water_tank"), clock="virtual", any_port=True) as host:
        with connected(_port(host.url("cpu1"))) as client:
            before = bytes(client.db_read(1, 0, 8))  # type: ignore[attr-defined]
            client.db_write(1, 6, bytearray(b"\x00\x49"))  # type: ignore[attr-defined]
            after = bytes(client.db_read(1, 0, 8))  # type: ignore[attr-defined]
        save_traffic(host.devices["cpu1"], cassette)
    saved = load_cassette(cassette)
    assert [entry.protocol for entry in saved] == ["s7"] * 4 and S7.is_handshake(saved.entries[0].request)
    with SimHost(replay_scenario(cassette), any_port=True) as replay:
        assert replay.url("cpu1").endswith("?rack=0&slot=1")
        with connected(_port(replay.url("cpu1"))) as client:
            assert bytes(client.db_read(1, 0, 8)) == before  # type: ignore[attr-defined]
            client.db_write(1, 6, bytearray(b"\x00\x49"))  # type: ignore[attr-defined]
            assert bytes(client.db_read(1, 0, 8)) == after  # type: ignore[attr-defined]
    assert before != after


def test_recorded_timing_delays_each_answer_by_its_recorded_latency(data: Path) -> None:
    cassette, _ = import_capture(data / "s7" / "replay_session.pcap")
    slow = Cassette([entry._replace(latency=2.0) for entry in cassette], cassette.header)
    read = cassette.entries[1].request
    assert Replayer(slow, timing="recorded", speed=4).answer(1, read).delay == 0.5
    assert Replayer(slow, timing="fast").answer(1, read).delay == 0.0


def test_diff_names_the_s7_exchange_whose_answer_changed(data: Path, tmp_path: Path) -> None:
    a, _ = import_capture(data / "s7" / "replay_session.pcap")
    changed = pdu.encode_response(2, pdu.ReadResponse((pdu.ItemData(0xFF, pdu.DataTransport.BYTE, bytes(8)),)))
    b = Cassette([e._replace(response=changed) if i == 1 else e for i, e in enumerate(a)], a.header)
    differences = diff_cassettes(a, b)
    assert [d.kind for d in differences] == ["response"]
    assert "read DB1.DBB0 x8: A answered 00 01 02 03 04 05 06 07; B answered 00 00 00 00 00 00 00 00" in (
        differences[0].describe()
    )
    a.save(tmp_path / "a.jsonl")
    b.save(tmp_path / "b.jsonl")
    same = subprocess.run([*CLI, "diff", str(tmp_path / "a.jsonl"), str(tmp_path / "a.jsonl")], capture_output=True)
    other = subprocess.run(
        [*CLI, "diff", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], capture_output=True, text=True
    )
    assert same.returncode == 0 and other.returncode == 1
    assert "read DB1.DBB0 x8" in other.stdout


# --- the wire, byte by byte -------------------------------------------------------------------------------


def _tpkt(payload: bytes) -> bytes:
    from bifrost.s7 import framing

    return framing.encode_tpkt(payload)


def test_the_cutter_gives_every_byte_back_and_joins_cotp_fragments() -> None:
    from bifrost.s7 import framing
    from simulators.recording.s7 import S7Cutter

    connect = framing.ClientConnection(0, 2).connect_request()  # rack 0, slot 2
    job = pdu.encode_request(7, pdu.ReadRequest((pdu.VarSpec(pdu.Area.DB, 0, 4, db=1),)))
    split = _tpkt(framing.encode_cotp_data(job[:9], eot=False)) + _tpkt(framing.encode_cotp_data(job[9:]))
    stream = connect + split
    for step in (1, 5, len(stream)):
        cutter = S7Cutter("requests")
        cuts = [cut for at in range(0, len(stream), step) for cut in cutter.feed(stream[at : at + step])]
        assert b"".join(cut.piece for cut in cuts) == stream  # nothing changed, nothing lost
        assert [cut.text for cut in cuts if cut.pdu is None] == ["COTP connect request (rack 0, slot 2)"]
        assert [(cut.unit, cut.ident, cut.pdu) for cut in cuts if cut.pdu is not None] == [(2, 7, job)]
        assert S7.unwrap("s7", cuts[-1].piece, "requests") == job


def test_a_broken_stream_is_relayed_as_it_is_and_said_so() -> None:
    from simulators.recording.s7 import S7Cutter

    cutter = S7Cutter("responses")
    cuts = cutter.feed(b"\x05\x00\x00\x10garbage")
    assert [cut.piece for cut in cuts] == [b"\x05\x00\x00\x10garbage"] and cuts[0].text.startswith("broken")
    assert [cut.piece for cut in cutter.feed(b"more")] == [b"more"]


def test_sniff_tells_s7_from_other_first_bytes(data: Path) -> None:
    from bifrost.modbus.framing import encode_mbap
    from bifrost.s7 import framing

    assert S7.sniff(framing.ClientConnection().connect_request()) == "s7"
    assert S7.sniff(encode_mbap(0x0300, 1, b"\x03\x00\x00\x00\x01")) is None  # an MBAP id of 0x03..
    assert S7.sniff(b"GET / HTTP/1.1\r\n") is None
    assert S7.sniff(b"\x03\x00\x00\x16") is None  # too short to tell


def test_a_capture_whose_segments_split_frames_imports_the_same(data: Path, tmp_path: Path) -> None:
    from bifrost.s7 import framing

    whole, _ = import_capture(data / "s7" / "replay_session.pcap")
    talk = Conversation(("10.0.0.9", 40100), ("10.0.0.5", 10102))
    cr = framing.ClientConnection(0, 1).connect_request()
    talk.send("client", cr[:5])
    talk.send("client", cr[5:])
    for entry in whole:
        request = _tpkt(framing.encode_cotp_data(entry.request))
        talk.send("client", request[:3])  # every job in two segments
        talk.send("client", request[3:])
        assert entry.response is not None
        talk.send("server", _tpkt(framing.encode_cotp_data(entry.response)))
    cassette, report = import_capture(write_pcap(tmp_path / "split.pcap", talk.packets), framing="s7")
    assert report.connections[0].framing == "s7"
    assert [(e.unit, e.request, e.response) for e in cassette] == [(e.unit, e.request, e.response) for e in whole]


def test_the_import_command_reads_s7_and_names_the_framing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported.jsonl"
    result = subprocess.run(
        [*CLI, "import", str(data / "s7" / "replay_session.pcap"), "-o", str(out), "--device", "cpu1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert ": s7, 7 exchange(s)" in result.stdout and "wrote 7 exchange(s)" in result.stdout
    assert load_cassette(out).devices() == ["cpu1"]
    wrong = subprocess.run(
        [*CLI, "import", str(data / "s7" / "replay_session.pcap"), "-o", str(out), "--framing", "iso"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "no protocol travels as 'iso' (known: s7, opcua, mbap, rtu)" in wrong.stderr
