"""The Avro contract upstream systems publish to kiroku (see README.md, "Upstream messages")."""
