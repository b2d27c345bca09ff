"""The kopf operator that turns a RaftKV resource into a running cluster."""
