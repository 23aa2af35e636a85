"""Hashboard simulator (`hashpilot sim`): BM13xx chains and a board controller on ptys.

See docs/simulator.md.
"""
