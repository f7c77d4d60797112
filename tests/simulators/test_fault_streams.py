"""Transport faults on a VirtualClock: bytes arrive exactly when the faults say, at no cost in wall time.

A Lane's pump registers its timer when it first runs, so each test lets it run (one `sleep(0)`) and
then checks the clock's next timer: that is when the bytes are due, and nothing can arrive before it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifrost.modbus.framing import crc16, encode_mbap, encode_rtu
from simulators.clock import SystemClock, VirtualClock
from simulators.faults import FaultSet, Lane, Timing, clock_sleep, flip_bits, wrap_streams
from simulators.modbus.frames import MBAP, Pairing, Splitter, request_info

REQUEST = encode_mbap(1, 1, bytes([3, 0, 0, 0, 2]))
REPLY = encode_mbap(1, 1, bytes([3, 4, 0, 1, 0, 2]))


class Arrivals:
    """A lane's sink that notes when (plant time) each piece came."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.pieces: list[tuple[float, bytes]] = []

    def __call__(self, data: bytes) -> None:
        self.pieces.append((self.clock.now(), data))

    @property
    def data(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)

    @property
    def times(self) -> list[float]:
        return [when for when, _ in self.pieces]


def lane_with(*faults: str, seed: int = 0) -> tuple[VirtualClock, FaultSet, Lane, Arrivals]:
    clock = VirtualClock()
    fault_set = FaultSet(framer=MBAP, clock=clock, seed=seed, faults=faults)
    arrivals = Arrivals(clock)
    return clock, fault_set, Lane(fault_set, "downstream", arrivals), arrivals


async def let_run() -> None:
    """One turn of the loop: a pump created by push() registers its timer."""
    await asyncio.sleep(0)


async def autojump(clock: VirtualClock, lane: Lane) -> None:
    """Move time from timer to timer until the lane is idle, letting its pump run at each one, so that
    each piece is sent (and noted) at its own time. A yield, not a wait: the pump is runnable."""
    while not lane.idle:
        when = clock.next_timer()
        if when is None:
            await let_run()  # the pump was woken and runs on this turn
        else:
            clock.advance(when - clock.now())


@pytest.mark.asyncio
async def test_no_fault_passes_bytes_at_once_without_a_task() -> None:
    _, _, lane, arrivals = lane_with()
    assert lane.push(REPLY) == ()
    assert arrivals.pieces == [(0.0, REPLY)]  # synchronously: nothing was scheduled
    assert lane.idle


@pytest.mark.asyncio
async def test_latency_delivers_exactly_delay_later() -> None:
    clock, _, lane, arrivals = lane_with("latency,delay=200ms")
    clock.advance(1.5)
    assert lane.push(REPLY) == ("latency",)
    await let_run()
    assert clock.next_timer() == pytest.approx(1.7)
    clock.advance(0.199)
    await let_run()
    assert arrivals.pieces == []
    clock.advance(0.001)
    await lane.drained()
    assert arrivals.pieces == [(pytest.approx(1.7), REPLY)]


@pytest.mark.asyncio
async def test_latency_keeps_order_and_jitter_stays_within_its_bounds_and_repeats() -> None:
    async def run(seed: int) -> list[float]:
        clock, _, lane, arrivals = lane_with("latency,delay=100ms,jitter=50ms", seed=seed)
        for index in range(20):
            lane.push(bytes([index]))
        await autojump(clock, lane)
        assert arrivals.data == bytes(range(20))  # never reordered
        return arrivals.times

    times = await run(3)
    # Each delay is drawn in [50ms, 150ms]; a chunk whose draw is shorter than the one before it leaves
    # with that one, as bytes on a TCP stream never overtake each other.
    assert times == sorted(times)
    assert all(0.05 <= when <= 0.15 for when in times)
    assert len(set(times)) > 3
    assert await run(3) == times
    assert await run(4) != times


@pytest.mark.asyncio
async def test_slicer_sends_pieces_of_size_with_gaps() -> None:
    clock, _, lane, arrivals = lane_with("slicer,size=4,gap=10ms")
    lane.push(REPLY)  # 15 bytes: 4 + 4 + 4 + 3
    await autojump(clock, lane)
    assert [piece for _, piece in arrivals.pieces] == [REPLY[0:4], REPLY[4:8], REPLY[8:12], REPLY[12:]]
    assert arrivals.times == pytest.approx([0.0, 0.01, 0.02, 0.03])


@pytest.mark.asyncio
async def test_bandwidth_paces_bytes_as_a_slow_line_does() -> None:
    clock, _, lane, arrivals = lane_with("bandwidth,rate=100")  # 100 B/s: a byte every 10ms
    lane.push(b"abcde")
    lane.push(b"fg")  # queued behind: the line is busy until 50ms
    await autojump(clock, lane)
    assert arrivals.data == b"abcdefg"
    assert arrivals.times == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07])


@pytest.mark.asyncio
async def test_bandwidth_and_latency_add_up() -> None:
    clock, _, lane, arrivals = lane_with("bandwidth,rate=1000", "latency,delay=1s")
    lane.push(bytes(20))  # pieces of 10 bytes (10ms of line each)
    await autojump(clock, lane)
    assert arrivals.times == pytest.approx([1.01, 1.02])


@pytest.mark.asyncio
async def test_drop_loses_one_chunk_and_a_count_limits_it() -> None:
    _, fault_set, lane, arrivals = lane_with("drop,count=1")
    assert lane.push(b"one") == ("drop",)
    assert lane.push(b"two") == ()
    assert arrivals.data == b"two"
    assert fault_set.active() == []


@pytest.mark.asyncio
async def test_stall_swallows_everything_until_it_ends() -> None:
    clock, fault_set, lane, arrivals = lane_with()
    handle = fault_set.add("stall,for=5s")
    for chunk in (b"a", b"b", b"c"):
        lane.push(chunk)
    assert arrivals.pieces == [] and handle.hits == 3
    clock.advance(5)
    lane.push(b"d")
    assert arrivals.data == b"d"


@pytest.mark.asyncio
async def test_a_probable_stall_once_hit_stays() -> None:
    _, fault_set, lane, arrivals = lane_with(seed=5)
    fault_set.add("stall,probability=0.5")
    results = [lane.push(bytes([index])) for index in range(30)]
    first = next(index for index, hit in enumerate(results) if hit)
    assert arrivals.data == bytes(range(first))
    assert all(hit == ("stall",) for hit in results[first:])


@pytest.mark.asyncio
async def test_corrupt_flips_exactly_the_bits_asked_and_an_rtu_crc_then_fails() -> None:
    _, _, lane, arrivals = lane_with("corrupt,bits=3")
    frame = encode_rtu(1, bytes([3, 4, 0, 1, 0, 2]))
    lane.push(frame)
    (corrupted,) = [piece for _, piece in arrivals.pieces]
    assert sum(bin(a ^ b).count("1") for a, b in zip(frame, corrupted, strict=True)) == 3
    assert crc16(corrupted[:-2]) != int.from_bytes(corrupted[-2:], "little")


def test_flip_bits_is_seeded() -> None:
    import random

    assert flip_bits(b"\x00" * 8, 2, random.Random(1)) == flip_bits(b"\x00" * 8, 2, random.Random(1))
    assert flip_bits(b"", 2, random.Random(1)) == b""


@pytest.mark.parametrize("kind", ["reset", "close"])
@pytest.mark.asyncio
async def test_reset_and_close_end_the_connection_in_place_of_the_chunk(kind: str) -> None:
    clock = VirtualClock()
    fault_set = FaultSet(framer=MBAP, clock=clock)
    arrivals = Arrivals(clock)
    ended: list[str] = []
    lane = Lane(fault_set, "downstream", arrivals, ended.append)
    lane.push(b"before")
    fault_set.add(kind)
    assert lane.push(b"lost") == (kind,)
    assert lane.push(b"after") == ()  # nothing passes once the end is on its way
    await lane.drained()
    assert arrivals.data == b"before" and ended == [kind] and lane.ended == kind


@pytest.mark.asyncio
async def test_a_direction_limits_a_fault_to_its_way() -> None:
    clock = VirtualClock()
    fault_set = FaultSet(framer=MBAP, clock=clock, faults=["drop,direction=upstream"])
    up, down = Arrivals(clock), Arrivals(clock)
    Lane(fault_set, "upstream", up).push(REQUEST)
    Lane(fault_set, "downstream", down).push(REPLY)
    assert up.data == b"" and down.data == REPLY


@pytest.mark.asyncio
async def test_a_match_on_a_transport_fault_picks_requests() -> None:
    _, _, lane, arrivals = lane_with("drop,function=4")
    pairing = Pairing("mbap")
    splitter = Splitter("mbap", "requests")
    ((piece, frame),) = splitter.feed(REQUEST)
    info = request_info(frame)
    pairing.request(frame)
    assert piece == REQUEST and info is not None and info.function == 3
    ((reply, reply_frame),) = Splitter("mbap", "responses").feed(REPLY)
    assert lane.push(reply, pairing.reply(reply_frame)) == ()
    assert lane.push(b"bytes that are no frame", None) == ()  # a matched fault cannot pick these
    assert arrivals.data == REPLY + b"bytes that are no frame"


# --- timing -------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_clock_sleep_on_a_virtual_clock_waits_for_advance() -> None:
    clock = VirtualClock()
    sleep = clock_sleep(clock)
    task = asyncio.ensure_future(sleep(0.5))
    await let_run()
    assert clock.next_timer() == 0.5 and not task.done()
    clock.advance(0.5)
    await task
    await sleep(0)  # no time: returns at once
    assert Timing.of(clock).now() == 0.5


@pytest.mark.asyncio
async def test_clock_sleep_on_a_cancelled_sleeper_drops_its_timer() -> None:
    clock = VirtualClock()
    task = asyncio.ensure_future(clock_sleep(clock)(1.0))
    await let_run()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.next_timer() is None


@pytest.mark.asyncio
async def test_system_time_sleeps_for_real_and_scales_with_speed() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await clock_sleep(SystemClock(speed=100))(1.0)  # one plant second at 100x: 10ms of wall time
    await clock_sleep(None)(0.01)
    assert loop.time() - start >= 0.019


# --- frames --------------------------------------------------------------------------------------------------

_FRAMES = [encode_mbap(7, 1, bytes([3, 0, 0, 0, 2])), encode_mbap(8, 2, bytes([6, 0, 1, 0, 9]))]
_RTU_FRAMES = [encode_rtu(1, bytes([3, 0, 0, 0, 2])), encode_rtu(2, bytes([6, 0, 1, 0, 9]))]
_NOISE = [b"\x00\x01\x00", b"\xff", b"\x01\x03\x02"]


@given(
    st.sampled_from(["mbap", "rtu"]),
    st.lists(st.sampled_from([0, 1, 2, 3, 4]), max_size=6),
    st.lists(st.integers(0, 60), max_size=5),
)
def test_the_splitter_never_changes_a_byte(framing: str, picks: list[int], cuts: list[int]) -> None:
    frames = _FRAMES if framing == "mbap" else _RTU_FRAMES
    stream = b"".join(([*frames, *_NOISE])[pick] for pick in picks)
    splitter = Splitter(framing, "requests")  # type: ignore[arg-type]
    bounds = sorted(min(cut, len(stream)) for cut in cuts)
    out = b""
    for start, end in zip([0, *bounds], [*bounds, len(stream)], strict=True):
        out += b"".join(piece for piece, _ in splitter.feed(stream[start:end]))
    out += b"".join(piece for piece, _ in splitter.flush())
    # Bytes come out in order, unchanged; MBAP may still wait on the rest of what looks like a header.
    assert out == stream[: len(out)]
    assert len(stream) - len(out) == splitter.pending
    if framing == "rtu":
        assert out == stream


def test_the_splitter_finds_whole_frames() -> None:
    splitter = Splitter("mbap", "requests")
    pieces = splitter.feed(_FRAMES[0] + _FRAMES[1][:5])
    assert [(piece, frame is not None) for piece, frame in pieces] == [(_FRAMES[0], True)]
    ((piece, frame),) = splitter.feed(_FRAMES[1][5:])
    assert piece == _FRAMES[1] and frame is not None and frame.transaction_id == 8


# --- wrapped streams on real sockets ----------------------------------------------------------------------


@asynccontextmanager
async def wrapped_server(
    fault_set: FaultSet, answer: Callable[[bytes], bytes], answered: asyncio.Event | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A server that answers each request frame through `fault_set`'s wrappers, and a client of it."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        faulty_reader, faulty_writer = wrap_streams(fault_set, reader, writer)
        try:
            while request := await faulty_reader.read(len(REQUEST)):
                faulty_writer.write(answer(request))
                if answered is not None:
                    answered.set()  # after write(): a pump, if any, was created first and runs first
                await faulty_writer.drain()
        finally:
            faulty_writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        server.close()


@pytest.mark.asyncio
async def test_wrapped_streams_delay_replies_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    fault_set = FaultSet(framer=MBAP, clock=clock, faults=["latency,delay=2s"])
    answered = asyncio.Event()
    async with wrapped_server(fault_set, lambda request: REPLY, answered) as (reader, writer):
        writer.write(REQUEST)
        reply = asyncio.ensure_future(reader.readexactly(len(REPLY)))
        await asyncio.wait_for(answered.wait(), 5)
        assert clock.next_timer() == 2.0 and not reply.done()
        clock.advance(2)
        assert await asyncio.wait_for(reply, 5) == REPLY


@pytest.mark.asyncio
async def test_wrapped_streams_reset_the_client() -> None:
    fault_set = FaultSet(framer=MBAP, clock=VirtualClock(), faults=["reset"])
    async with wrapped_server(fault_set, lambda request: REPLY) as (reader, writer):
        writer.write(REQUEST)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(100), 5)


@pytest.mark.asyncio
async def test_wrapped_streams_close_the_client_gracefully() -> None:
    fault_set = FaultSet(framer=MBAP, clock=VirtualClock(), faults=["close,direction=upstream"])
    async with wrapped_server(fault_set, lambda request: REPLY) as (reader, writer):
        writer.write(REQUEST)
        assert await asyncio.wait_for(reader.read(100), 5) == b""


@pytest.mark.asyncio
async def test_wrapped_streams_pass_everything_untouched_without_faults() -> None:
    fault_set = FaultSet(framer=MBAP, clock=VirtualClock())
    async with wrapped_server(fault_set, lambda request: request[::-1]) as (reader, writer):
        writer.write(REQUEST)
        assert await asyncio.wait_for(reader.readexactly(len(REQUEST)), 5) == REQUEST[::-1]


def test_abort_with_reset_sets_linger_zero() -> None:
    from simulators.faults.streams import abort_with_reset

    class Plain:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock
            self.closed = False

        def get_extra_info(self, name: str, default: object = None) -> object:
            return self.sock if name == "socket" else default

        def close(self) -> None:
            self.closed = True

    with socket.socket() as sock:
        writer = Plain(sock)
        abort_with_reset(writer)  # type: ignore[arg-type]
        assert writer.closed
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER) != 0
