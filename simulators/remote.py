"""`simulators.remote.RemoteHost`: SimHost's surface over a `bifrost-sim serve --control` API (see
simulators.control.remote)."""

from simulators.control.remote import RemoteDevice, RemoteFault, RemoteHost

__all__ = ["RemoteDevice", "RemoteFault", "RemoteHost"]
