"""cgminer/bmminer-compatible RPC (TCP 4028) for farm tools: see docs/cgminer-api.md.

`attach(agent)` is the agent's one entry point: it returns None when `[api] listen` is empty,
otherwise an ApiFrontEnd whose snapshot timer runs on the control thread and whose server runs
on its own thread.
"""


def attach(agent):
    cfg = agent.cfg.get('api') or {}
    if not cfg.get('listen'):
        return None
    from agent.api.frontend import ApiFrontEnd
    return ApiFrontEnd(agent, cfg)
