"""Stratum V1 client: protocol session (pure), pool connections and failover (threads)."""
