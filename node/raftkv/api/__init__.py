"""HTTP edges of the member: thin adapters over `raftkv.server.node.Node`."""
