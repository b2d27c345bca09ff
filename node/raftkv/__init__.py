"""raftkv: a strongly consistent key-value store replicated with Raft."""

__version__ = "0.1.0"
