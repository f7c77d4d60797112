"""Drive a `bifrost-sim serve` running in another process, as a test in another container would.

The serve is started here only to keep the example self-contained; in CI it is a service of its own
(`bifrost-sim serve plant.yaml --control 0.0.0.0:8020 --control-token $TOKEN`), and the tests get its
address from the environment.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import bifrost
from simulators.remote import RemoteHost

serve = subprocess.Popen(
    [sys.executable, "-m", "simulators.cli", "serve", "water_tank", "--json", "--any-port", "--clock", "virtual",
     "--control", "127.0.0.1:0"],
    stdout=subprocess.PIPE,
    text=True,
)  # fmt: skip
assert serve.stdout is not None
control = json.loads(serve.stdout.readline())["control"]  # one JSON line once everything listens


async def read_level(url: str, tags: bifrost.TagMap) -> float:
    async with bifrost.connect(url, tags=tags) as plc:
        point = await plc.read("tank.level")
        assert isinstance(point.value, float)
        return point.value


try:
    with RemoteHost(control) as host:
        plc1 = host.devices["plc1"]
        print("plc1 answers at", plc1.url)
        host.plant.set("pump.run", True)  # the process, behind the PLC's back
        host.clock.advance(30)  # thirty seconds of plant time, at once
        print(f"level after 30 s of pumping: {asyncio.run(read_level(plc1.url, plc1.tags)):.1f} %")
        with host.inject_fault("plc1", "exception", code=6, match={"function": 3}) as fault:
            try:
                asyncio.run(read_level(plc1.url, plc1.tags))
            except bifrost.DeviceError as error:
                print(f"with the fault on: {error} (hits: {fault.hits})")
        print("requests plc1 saw:", plc1.log.count())
        host.reset()
finally:
    serve.terminate()
    serve.wait(30)
