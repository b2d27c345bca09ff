"""Unit tests of the Raft core (raftkv.raft), named after the property each protects."""
