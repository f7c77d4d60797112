"""`bifrost discover`: which hosts of an explicit range answer on the PLC ports, and what they speak.

A port that accepts a connection is asked through the Connection API: a Modbus read on the Modbus
port(s) — any answer, even an exception, is a Modbus device; the CPU state (SZL 0x0424) on the S7 port(s);
GetEndpoints on the OPC UA port. Other ports are listed as open with the protocol their number suggests.
Bounded: the range is given explicitly (no default network), at most --max-hosts hosts, a short timeout
per connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import Annotated, Any

import typer

from bifrost.cli import common
from bifrost.cli.common import JsonOption, TimeoutOption
from bifrost.errors import BifrostError, ConfigError, DeviceError

HELP = """Find PLCs on hosts given explicitly: an address, a CIDR range or a URL.

An opc.tcp:// URL is asked FindServers and GetEndpoints: the servers, and each endpoint's security
policy, mode and logins.

Examples:

  bifrost discover 127.0.0.1 --ports 5020,502

  bifrost discover 192.0.2.0/28 --json

  bifrost discover opc.tcp://127.0.0.1:4840/bifrost
"""

WELL_KNOWN = {502: "modbus", 102: "s7", 4840: "opcua"}


def _hosts(target: str, max_hosts: int) -> list[str]:
    if "://" in target:
        from urllib.parse import urlsplit

        host = urlsplit(target).hostname
        if not host:
            raise ConfigError(f"{target!r}: no host in this URL")
        return [host]
    try:
        network = ipaddress.ip_network(target, strict=False)
    except ValueError:
        raise ConfigError(f"{target!r}: expected an address, a CIDR range such as 192.0.2.0/28, or a URL") from None
    hosts = [str(host) for host in (network.hosts() if network.num_addresses > 2 else network)]
    if len(hosts) > max_hosts:
        raise ConfigError(f"{target} holds {len(hosts)} hosts; at most {max_hosts} (raise --max-hosts to scan more)")
    return hosts


def _ports(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--ports {text!r}: expected port numbers separated by commas") from None
    if not ports or not all(0 < port < 65536 for port in ports):
        raise ConfigError(f"--ports {text!r}: ports are 1..65535")
    return ports


async def _open(host: str, port: int, timeout: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


async def _identify(host: str, port: int, modbus_ports: set[int], s7_ports: set[int], timeout: float) -> dict[str, Any]:
    found: dict[str, Any] = {
        "host": host,
        "port": port,
        "protocol": WELL_KNOWN.get(port, "unknown"),
        "confirmed": False,
    }
    if port in modbus_ports:
        shown = f"[{host}]" if ":" in host else host
        url = f"modbus://{shown}:{port}?unit=1"
        try:
            async with common.connect(url, None, None, timeout) as plc:
                await plc.read("hr:0")
            found.update(protocol="modbus", confirmed=True, url=url)
        except DeviceError as exc:  # an exception answer is still a Modbus device
            found.update(protocol="modbus", confirmed=True, url=url, note=str(exc))
        except BifrostError as exc:
            found["note"] = str(exc)
    elif port in s7_ports:
        shown = f"[{host}]" if ":" in host else host
        url = f"s7://{shown}:{port}?rack=0&slot=1"
        try:
            async with common.connect(url, None, None, timeout) as plc:
                state = await plc.cpu_state()  # type: ignore[attr-defined]  # an S7Connection
            found.update(protocol="s7", confirmed=True, url=url, state=state)
        except BifrostError as exc:  # a CPU on another rack/slot still answered the connection request
            found["note"] = str(exc)
    elif WELL_KNOWN.get(port) == "opcua":
        from bifrost.opcua.discovery import get_endpoints

        shown = f"[{host}]" if ":" in host else host
        try:
            endpoints = await get_endpoints(f"opc.tcp://{shown}:{port}", timeout)
            found.update(confirmed=True, url=endpoints[0].url if endpoints else f"opc.tcp://{shown}:{port}")
        except (BifrostError, ImportError) as exc:
            found["note"] = str(exc)
    return found


def _opcua(url: str, timeout: float, as_json: bool) -> None:
    from dataclasses import asdict

    from bifrost.opcua.discovery import find_servers, get_endpoints

    async def main() -> tuple[list[Any], list[Any]]:
        return await find_servers(url, timeout), await get_endpoints(url, timeout)

    servers, endpoints = common.run(main)
    if as_json:
        typer.echo(json.dumps({"servers": [asdict(s) for s in servers], "endpoints": [asdict(e) for e in endpoints]}))
        return
    for server in servers:
        typer.echo(f"{server.name} ({server.kind}) {server.application_uri}: {', '.join(server.discovery_urls)}")
    for endpoint in endpoints:
        typer.echo(
            f"  {endpoint.url}  security={endpoint.security} mode={endpoint.mode}  logins: {', '.join(endpoint.logins)}"
        )


def discover(
    target: Annotated[str, typer.Argument(help="An address, a CIDR range or a URL.")],
    ports: Annotated[str, typer.Option("--ports", help="Ports to try, comma-separated.")] = "502,102,4840",
    modbus_ports: Annotated[str, typer.Option("--modbus-ports", help="Which of them to ask in Modbus.")] = "502",
    s7_ports: Annotated[str, typer.Option("--s7-ports", help="Which of them to ask in S7 (rack 0, slot 1).")] = "102",
    max_hosts: Annotated[int, typer.Option("--max-hosts", help="Refuse a range with more hosts than this.")] = 256,
    timeout: TimeoutOption = "1s",
    as_json: JsonOption = False,
) -> None:
    if target.lower().startswith("opc.tcp://"):
        _opcua(target, common.seconds(timeout, "--timeout"), as_json)
        return
    hosts = _hosts(target, max_hosts)
    port_list = _ports(ports)
    asked, s7_asked = set(_ports(modbus_ports)), set(_ports(s7_ports))
    limit = common.seconds(timeout, "--timeout")

    async def main() -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(64)  # connections tried at once

        async def one(host: str, port: int) -> dict[str, Any] | None:
            async with gate:
                if not await _open(host, port, limit):
                    return None
                return await _identify(host, port, asked, s7_asked, limit)

        results = await asyncio.gather(*(one(host, port) for host in hosts for port in port_list))
        return [result for result in results if result is not None]

    found = common.run(main)
    for item in found:
        if as_json:
            typer.echo(json.dumps(item))
        else:
            mark = "" if item["confirmed"] else " (port open; protocol not confirmed)"
            typer.echo(f"{item['host']}:{item['port']}  {item['protocol']}{mark}")
    if not found:
        if not as_json:
            typer.echo(f"nothing answered on {', '.join(map(str, port_list))} of {len(hosts)} host(s)")
        raise typer.Exit(common.EXIT_DEVICE)


def register(app: typer.Typer) -> None:
    app.command(help=HELP)(common.guarded(discover))
