"""Remote hosts over SSH: host specs, the ssh command, the remote side's stream and its agentless fallback."""
