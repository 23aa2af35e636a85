"""hashpilot on MicroPython: the adapters (serial, I2C, MQTT, flash outbox, timers) and the
composition root that run the agent core on an ESP32 Bitaxe or on the Unix port against the
simulator. Not a CPython package: runs under MicroPython only (docs/micropython.md).
"""
