"""Deterministic cluster simulator that checks the Raft core's safety and liveness.

Everything here is driven by one seed: a network that drops, duplicates, delays,
reorders and partitions messages; crashes and restarts from durable storage; compaction;
membership changes; client proposals and linearizable reads. After every step the
invariants of the Raft paper (§5.2 election safety, §5.3 log matching, §5.4 leader
completeness and state machine safety) are checked incrementally, so a violation is
reported at the step that caused it, with the seed and the command that replays it.

Replay one schedule: ``python -m tests.sim --seed N --trace``.
"""
