"""Make tests/data/opcua_asyncua.pcap with tcpdump (run as root: `python tests/data/make_opcua_capture.py`).

Not run by the tests, which read the file this writes. asyncua's client against asyncua's server on
127.0.0.1, port 48401 (not OPC UA's 4840), security None: the client reads the server's namespace
array, browses the tank's folder, reads a level that the server changes between reads, reads three
nodes in one request, writes a setpoint and reads it back.
"""

from __future__ import annotations

from pathlib import Path

from asyncua import Client, Server, ua
from make_captures import capture

HERE = Path(__file__).resolve().parent
PORT = 48401


async def traffic() -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{PORT}/tank")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:example:tank")
    tank = await server.nodes.objects.add_object(ua.NodeId("tank", ns), "tank")
    level = await tank.add_variable(ua.NodeId("tank.level", ns), "level", 42.0)
    speed = await tank.add_variable(ua.NodeId("pump.speed", ns), "speed", ua.Variant(1450, ua.VariantType.UInt16))
    name = await tank.add_variable(ua.NodeId("tank.name", ns), "name", "North tank")
    setpoint = await tank.add_variable(ua.NodeId("tank.setpoint", ns), "setpoint", 50.0)
    await setpoint.set_writable()
    async with server, Client(f"opc.tcp://127.0.0.1:{PORT}/tank") as client:
        await client.get_namespace_array()
        await client.get_node(ua.NodeId("tank", ns)).get_children()
        for value in (42.0, 42.5, 43.25):
            await level.write_value(value)  # the server's own change: the client reads each one
            await client.get_node(ua.NodeId("tank.level", ns)).read_value()
        await client.read_values([client.get_node(n.nodeid) for n in (speed, name, level)])
        node = client.get_node(ua.NodeId("tank.setpoint", ns))
        await node.write_value(ua.DataValue(ua.Variant(55.5, ua.VariantType.Double)))
        await node.read_value()


if __name__ == "__main__":
    capture(HERE / "opcua_asyncua.pcap", PORT, traffic)
