"""Record and replay: cassettes, pcap/pcapng import, replay as a virtual PLC, and diff (docs/replay.md).

- `cassette`: the format (JSONL, one exchange a line), `load_cassette`, `CassetteWriter`.
- `codec`: what a protocol provides to recording; Modbus's is in `modbus`, OPC UA's in `opcua`
  (`opcua_chunks` cuts its byte streams; `opcua_replay` serves a cassette as an OPC UA server, with
  `opcua_answers` deciding each Read and Write, `opcua_relay` in front of the server, `opcua_headers`
  for the fast look at a request, and `opcua_forward` asking a real server in `new_episodes`).
- `pcap`, `tcp`, `importer`: captures to cassettes.
- `replay`: a device that answers from a cassette; `diff`: two cassettes compared.

Nothing here imports the server stack at import time, so reading and importing stay cheap.
"""

from __future__ import annotations

from simulators.recording.cassette import (
    CASSETTE_VERSION,
    Cassette,
    CassetteError,
    CassetteWriter,
    Entry,
    load_cassette,
    save_cassette,
)
from simulators.recording.codec import Codec, codec_for, register_codec

__all__ = [
    "CASSETTE_VERSION",
    "Cassette",
    "CassetteError",
    "CassetteWriter",
    "Codec",
    "Entry",
    "codec_for",
    "load_cassette",
    "register_codec",
    "save_cassette",
]
