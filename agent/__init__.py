"""hashpilot: control agent for BM13xx ASIC miners."""
__version__ = '0.1.0'
