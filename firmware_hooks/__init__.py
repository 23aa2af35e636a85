"""Firmware integration: install into a root, init scripts, upgrade/rollback, event hooks, sd_notify.

Stdlib only. The agent uses `sd_notify`, `health` (health-file contract) and `events` (HookRunner);
`hashpilot firmware ...` (cli.py) drives the rest.
"""
