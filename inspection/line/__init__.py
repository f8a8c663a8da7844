"""On the line: result payloads, sinks with an outbox, the PLC handshake and cameras (torch-free)."""
