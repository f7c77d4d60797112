"""A Read or Write asked of a real OPC UA server, one at a time: what an OPC UA replay's `fallback` is in
the pytest plugin's `new_episodes` (a request the cassette cannot answer goes to the device).

A replayed client's request cannot be passed on as it is: its session is the replay's, not the
device's. So an asyncua client holds a session of its own to `url` (the recording proxy in front of
the device, so the exchange lands in the cassette as recording writes it) and asks the request's
parameters again; the answer goes back with the replayed client's request handle. The session lives on
an event loop of its own thread, so a call blocks only its caller (the replay asks on a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from bifrost._extras import require
from simulators.recording.opcua import decode, encode, service_name

log = logging.getLogger(__name__)
_TIMEOUT = 10.0
# The client's watchdog reads the server's state this often (s): rarely, so the cassette is not
# filled with its reads (they are the server's own business in a replay anyway).
_WATCHDOG = 3600.0


class OpcuaForward:
    """`forward(request) -> response`: a Read or Write service message asked of the server at `url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bifrost opcua forward", daemon=True)
        self._thread.start()
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self, request: bytes) -> bytes | None:
        """The server's answer (a service message), or None when it gave none (it is unreachable)."""
        with self._lock:
            if not self._thread.is_alive():
                return None
            future = asyncio.run_coroutine_threadsafe(self._ask(request), self._loop)
            return future.result(_TIMEOUT * 2)

    async def _session(self) -> Any:
        if self._client is None:
            client = require("asyncua", "opcua").Client(self.url, timeout=_TIMEOUT, watchdog_intervall=_WATCHDOG)
            await client.connect()
            self._client = client
        return self._client

    async def _ask(self, request: bytes) -> bytes | None:
        ua: Any = require("asyncua.ua", "opcua")
        asked = decode(request)
        name = service_name(asked)
        try:
            client = await self._session()
            if name == "Read":
                answered: Any = ua.ReadResponse()
                answered.Results = await client.uaclient.read(asked.Parameters)
            elif name == "Write":
                answered = ua.WriteResponse()
                answered.Results = await client.uaclient.write(asked.Parameters)
            else:
                return None  # only the data services are ever asked
        except ua.UaStatusCodeError as exc:  # the server refused the whole request: a ServiceFault
            answered = ua.ServiceFault()
            answered.ResponseHeader.ServiceResult = ua.StatusCode(exc.code)
        except (OSError, ConnectionError, asyncio.TimeoutError, ua.UaError) as exc:
            log.warning("%s: %s: %s", self.url, name, exc)
            await self._drop()
            return None
        answered.ResponseHeader.RequestHandle = asked.RequestHeader.RequestHandle
        return encode(answered)

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()

    def close(self) -> None:
        """End the session (through the proxy, so the cassette sees it closed) and the thread."""
        with self._lock:
            if not self._thread.is_alive():
                return
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result(_TIMEOUT)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_TIMEOUT)
            self._loop.close()


__all__ = ["OpcuaForward"]
