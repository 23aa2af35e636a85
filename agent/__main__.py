"""`python -m agent` runs the hashpilot command line."""
import sys

from agent.cli import main

sys.exit(main())
