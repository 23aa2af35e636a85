"""Safety supervisor package: Supervisor (per-tick decisions), Watchdog, safe state. Pure core.

    from agent.safety import Supervisor, Watchdog, safe_actions
See docs/safety.md.
"""

from agent.safety.supervisor import Supervisor
from agent.safety.watchdog import Watchdog, safe_actions
from agent.safety.board import STATES
from agent.safety.config import SECTION
