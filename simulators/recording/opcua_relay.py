"""The relay in front of an OPC UA replay's server: each client connection passed on to the C server a
whole chunk at a time, with the replay shown every request first (security None only).

The replay says, per request (`respond`): pass it on to the server, or answer it itself (a recorded
response, a refusal, the real device's answer) or not at all. A request answered by the relay never
reaches the server, and the relay's answer is a chunk the server never sent; each side checks that the
other's sequence numbers run on by one, so the relay renumbers: the client's chunks after a swallowed
request go on with numbers lowered by the chunks left out, and the server's chunks after an answer of the
relay's are raised by the chunks it added. Nothing is renumbered on a connection until the relay first
answers (and nothing is answered on a signed or encrypted channel), so bytes pass unchanged till then.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulators.recording.opcua_chunks import CHUNK_TYPES, MAX_CHUNK, MESSAGE_TYPES, ChunkFramer, Message, sequence_at

_HEADER = struct.Struct("<3scI")
_U32 = struct.Struct("<I")
_READ = 65536
_SEQUENCED = (b"OPN", b"CLO", b"MSG")
# Our answers' chunk size when the client's Hello said none smaller: the spec's least buffer (Part 6, 7.1.2.3).
_SMALLEST_BUFFER = 8192
_MOST = 65536


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the relay does with one request: pass it on to the server (`forward`), or answer it with
    `answer` (a service message; None: no answer at all), after `delay` seconds either way."""

    forward: bool = True
    answer: bytes | None = None
    delay: float = 0.0


FORWARD = Verdict()

Respond = Callable[[bytes], Awaitable[Verdict]]


def _renumbered(raw: bytes, delta: int) -> tuple[bytes, int | None]:
    """The chunk with its sequence number moved by `delta`, and the number it now has (None: no
    sequence header)."""
    if raw[:3] not in _SEQUENCED:
        return raw, None
    try:
        at = sequence_at(raw)
        (number,) = _U32.unpack_from(raw, at)
    except (ValueError, struct.error):
        return raw, None
    if delta == 0:
        return raw, number
    number = (number + delta) & 0xFFFFFFFF
    return raw[:at] + _U32.pack(number) + raw[at + 4 :], number


def answer_chunks(template: bytes, request_id: int, body: bytes, first: int, limit: int) -> list[bytes]:
    """`body` as MSG chunks of at most `limit` bytes on the request's channel and token (from the
    request's chunk `template`), numbered from `first`."""
    channel, token = struct.unpack_from("<II", template, 8)
    room = max(1, limit - 24)  # header 8, channel and token 8, sequence header 8
    parts = [body[at : at + room] for at in range(0, len(body), room)] or [b""]
    out = []
    for index, part in enumerate(parts):
        chunk = b"F" if index == len(parts) - 1 else b"C"
        payload = struct.pack("<IIII", channel, token, (first + index) & 0xFFFFFFFF, request_id) + part
        out.append(b"MSG" + chunk + _U32.pack(8 + len(payload)) + payload)
    return out


class RelayedConnection:
    """One client connection relayed to the server at (`reader`, `writer` upstream); see the module
    docstring. `run` until either side closes."""

    def __init__(
        self,
        respond: Respond,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.respond = respond
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.left_out = 0  # client chunks the server never saw
        self.added = 0  # chunks the client got from the relay, not the server
        self.last_sent: int | None = None  # the sequence number of the last chunk the client got
        self.limit = _SMALLEST_BUFFER

    async def run(self) -> None:
        await asyncio.gather(self._requests(), self._answers())

    async def _requests(self) -> None:
        """Client to server: whole chunks; a message's chunks held until it is whole, then passed on or
        answered as the replay says."""
        reader, writer = self.client_reader, self.server_writer
        framer = ChunkFramer()
        buffer = bytearray()
        held: list[bytes] = []
        passing = False  # not OPC UA: passed on as it is, for the server to refuse
        try:
            while data := await reader.read(_READ):
                if passing:
                    writer.write(data)
                    await writer.drain()
                    continue
                buffer += data
                while len(buffer) >= 8:
                    kind, chunk, size = _HEADER.unpack_from(buffer)
                    if kind not in MESSAGE_TYPES or chunk[0] not in CHUNK_TYPES or not 8 <= size <= MAX_CHUNK:
                        writer.write(b"".join(held) + bytes(buffer))
                        held.clear()
                        buffer.clear()
                        passing = True
                        break
                    if len(buffer) < size:
                        break
                    raw = bytes(buffer[:size])
                    del buffer[:size]
                    if kind == b"HEL" and size >= 16:
                        (wanted,) = _U32.unpack_from(raw, 12)  # the client's ReceiveBufferSize
                        self.limit = min(max(wanted, _SMALLEST_BUFFER), _MOST) if wanted else _SMALLEST_BUFFER
                    held.append(raw)
                    found = framer.feed(raw)
                    if not found:
                        continue  # a chunk of a message still to be completed
                    chunks, held = held, []
                    message = found[-1]
                    verdict = FORWARD
                    if isinstance(message, Message) and message.kind == "MSG" and not message.secured:
                        verdict = await self.respond(message.body)
                    if verdict.delay > 0:
                        await asyncio.sleep(verdict.delay)
                    if verdict.forward:
                        for piece in chunks:
                            writer.write(_renumbered(piece, -self.left_out)[0] if self.left_out else piece)
                    else:
                        self.left_out += len(chunks)
                        if verdict.answer is not None and isinstance(message, Message):
                            self._answer(chunks[-1], message.request_id or 0, verdict.answer)
                    if framer.broken is not None:
                        passing = True
                        writer.write(bytes(buffer))
                        buffer.clear()
                        break
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _answer(self, template: bytes, request_id: int, body: bytes) -> None:
        first = (self.last_sent or 0) + 1
        pieces = answer_chunks(template, request_id, body, first, self.limit)
        for piece in pieces:
            self.client_writer.write(piece)
        self.added += len(pieces)
        self.last_sent = (first + len(pieces) - 1) & 0xFFFFFFFF

    async def _answers(self) -> None:
        """Server to client: a whole chunk per write (so an answer of the relay's never lands inside
        one), renumbered once the relay has answered."""
        reader, writer = self.server_reader, self.client_writer
        try:
            while True:
                header = await reader.readexactly(8)
                kind, chunk, size = _HEADER.unpack_from(header)
                if kind not in MESSAGE_TYPES or chunk[0] not in CHUNK_TYPES or not 8 <= size <= MAX_CHUNK:
                    writer.write(header)
                    while data := await reader.read(_READ):
                        writer.write(data)
                        await writer.drain()
                    return
                raw = header + await reader.readexactly(size - 8)
                raw, number = _renumbered(raw, self.added)
                if number is not None:
                    self.last_sent = number
                writer.write(raw)
                await writer.drain()
        except asyncio.IncompleteReadError as exc:
            with contextlib.suppress(Exception):
                writer.write(exc.partial)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


__all__ = ["FORWARD", "RelayedConnection", "Respond", "Verdict", "answer_chunks"]
