"""The bifrost_mqtt_broker fixture: a real broker on a free port, stopped and started again on it."""

from __future__ import annotations

import socket

import pytest

from pytest_bifrost.mqtt import BrokerError, MqttBroker, free_port, mosquitto_path


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_fixture_broker_listens_and_comes_back_on_the_same_port(bifrost_mqtt_broker: MqttBroker) -> None:
    port = bifrost_mqtt_broker.port
    assert port > 0 and bifrost_mqtt_broker.url == f"mqtt://127.0.0.1:{port}"
    assert _accepts(port)
    bifrost_mqtt_broker.stop()
    assert not bifrost_mqtt_broker.running
    assert not _accepts(port)
    bifrost_mqtt_broker.start()
    assert bifrost_mqtt_broker.port == port and _accepts(port)


@pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
def test_a_taken_port_is_probed_again() -> None:
    # Hold the port the probe will hand out first, so that mosquitto's first try fails with EADDRINUSE.
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        broker = MqttBroker(kind="mosquitto")
        broker.port = taken  # as if it had been running there: start must not give up
        with pytest.raises(BrokerError, match="no free port"):
            broker.start()
        broker.port = 0
        with broker:
            assert broker.port != taken and _accepts(broker.port)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_tls_needs_mosquitto() -> None:
    from pathlib import Path

    from pytest_bifrost.mqtt import BrokerTls

    with pytest.raises(BrokerError, match="TLS"):
        MqttBroker(kind="amqtt", tls=BrokerTls(Path("ca"), Path("c"), Path("k")))


def test_amqtt_fallback_listens_and_restarts() -> None:
    pytest.importorskip("amqtt", reason="amqtt (the in-process fallback broker) is not installed")
    with MqttBroker(kind="amqtt") as broker:
        assert _accepts(broker.port)
        port = broker.port
        broker.stop()
        broker.start()
        assert broker.port == port and _accepts(port)
