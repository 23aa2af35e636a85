"""Autotuner: per-chip frequency and board/rig voltage for a power, hashrate or J/TH goal.

maths.py (pure), tuner.py (state machine, one step() per control tick), io.py (the narrow IO the
agent and the benchmark implement), halio.py (that IO over hal/rig.py), profile.py (strict
profiles), store.py (atomic results keyed by board identity), plant.py (fast in-process plant for
tests), report.py + png.py (`hashpilot tune report`). See docs/autotune.md.
"""
