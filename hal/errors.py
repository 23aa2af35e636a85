"""Errors shared by the pure core and the transports (no pyserial here: MicroPython-safe)."""


class TransportError(OSError):
    """A serial line could not be opened, written or read."""
