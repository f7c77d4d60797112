"""OPC UA: registers the opc.tcp:// URL scheme. The client itself is imported only when used."""
