"""etcd v3's gRPC API over the member: etcdctl and etcd client libraries use raftkv
unchanged (docs/etcd.md). A thin adapter: requests become the MVCC store's requests
(`kv.mvcc.requests`) and `Node` calls, as the native HTTP API's do."""
