"""The work path's pure core: Stratum jobs -> chip job frames -> nonces -> verified shares.

MicroPython-safe (hashlib, binascii, struct only); see docs/work.md.
"""
