"""Bitaxe board parts on I2C (EMC2101, TPS546, INA260, DS4432U): register maps, scaling and
drivers. Pure, MicroPython-safe. A bus is anything with machine.I2C's
`readfrom_mem(addr, reg, n)`, `writeto_mem(addr, reg, buf)` and `writeto(addr, buf)`: the ESP32's
machine.I2C, or hal/board_i2c.py's bridge over the board-controller protocol (Unix port, tests).
Facts and sources: docs/bitaxe-parts.md.
"""
