"""Everything about Trackier's v2 API: HTTP, pagination, shard plans, record validation."""
