"""etcd v3's protobuf messages: the `.proto` files (etcd's names and numbers) and the
code generated from them by `raftkv.etcdapi.codegen` (do not edit `*_pb2.py*`)."""
