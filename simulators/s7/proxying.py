"""S7 through the fault proxy (simulators.proxy): how jobs read to the faults, and the refusal the proxy
answers in the device's place, built as the simulated CPU builds it (simulators.s7.faults)."""

from __future__ import annotations

from collections.abc import Hashable

from bifrost.s7 import framing, pdu
from simulators.faults.frames import Framer
from simulators.hooks import Action, RequestInfo
from simulators.recording.codec import Cut
from simulators.s7.faults import answer_frame, refusal
from simulators.s7.frames import TPKT
from simulators.s7.traffic import S7RequestInfo


def _reference_at(piece: bytes) -> int | None:
    """Where the S7 header's PDU reference is in a TPKT packet carrying COTP data, or None."""
    if len(piece) < framing.TPKT_HEADER + 1:
        return None
    at = framing.TPKT_HEADER + piece[framing.TPKT_HEADER] + 1 + 4  # TPKT, COTP (its length byte first)
    return at if len(piece) >= at + 2 and piece[at - 4] == pdu.PROTOCOL_ID else None


class S7Session:
    """One relayed connection. S7 needs no state: replies name their job by the PDU reference."""

    value_status = False  # bad_quality is a hardware fault per item, as the simulated CPU answers it
    cheap_keys = True

    def info(self, cut: Cut) -> RequestInfo | None:
        if cut.pdu is None:
            return None
        try:
            _, request = pdu.decode_request(cut.pdu)
        except pdu.MalformedPdu:
            return None
        return S7RequestInfo(request)

    def handshake(self, info: RequestInfo) -> bool:
        # Setup communication is the connection's, as in front of the simulated CPU: no job faults.
        return isinstance(info, S7RequestInfo) and isinstance(info.request, pdu.SetupRequest)

    def refusal(self, cut: Cut, info: RequestInfo, code: int) -> bytes | None:
        if cut.ident is None or not isinstance(info, S7RequestInfo):
            return None
        return answer_frame(cut.ident, refusal(info.request, code))

    def forward(self, piece: bytes) -> bytes:
        return piece

    def withheld(self, piece: bytes) -> None:
        pass

    def deliver(self, piece: bytes) -> bytes:
        return piece

    def lost(self, piece: bytes) -> None:
        pass

    def freeze_key(self, cut: Cut, info: RequestInfo) -> Hashable | None:
        """A read job, as equal jobs are (but for the PDU reference): what `freeze` answers."""
        if cut.pdu is None or not isinstance(info, S7RequestInfo) or not isinstance(info.request, pdu.ReadRequest):
            return None
        return ("s7", cut.unit, cut.pdu[:4] + cut.pdu[6:])

    def frozen_answer(self, cut: Cut, answer: bytes) -> bytes | None:
        """The read's answer `answer` (an S7 PDU kept from before the freeze) for job `cut`."""
        if cut.ident is None or len(answer) < 6:
            return None
        s7 = answer[:4] + cut.ident.to_bytes(2, "big") + answer[6:]
        return framing.encode_tpkt(framing.encode_cotp_data(s7))

    def bad_quality(self, piece: bytes, body: bytes | None, info: RequestInfo, status: int | None) -> bytes | None:
        return None

    def rewrite(self, piece: bytes, action: Action) -> bytes:
        """`wrong_transaction`: another PDU reference, as the simulated CPU answers it."""
        at = _reference_at(piece) if action.wrong_transaction else None
        if at is None:
            return piece
        reference = ((piece[at] << 8 | piece[at + 1]) + 0x8000) & 0xFFFF
        return piece[:at] + reference.to_bytes(2, "big") + piece[at + 2 :]


class S7Proxying:
    protocol = "s7"
    framer: Framer = TPKT

    def session(self) -> S7Session:
        return S7Session()


DIALECT = S7Proxying()

__all__ = ["DIALECT", "S7Proxying", "S7Session"]
