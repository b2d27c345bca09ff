"""The member: the node loop that drives the Raft core, and everything it owns."""
