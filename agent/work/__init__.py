"""The agent's work path: pool jobs to chip job frames, chip nonces to verified shares."""
