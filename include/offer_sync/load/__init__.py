"""The PostgreSQL side: staging tables, whole-sweep checks, the merge, the run record, the schema."""
