"""PyInstaller entry point for the `hashpilot` binary (same as `python -m agent`)."""
import sys

from agent.cli import main

sys.exit(main())
