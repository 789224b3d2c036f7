"""A fresh PostgreSQL database per test; task bodies called in-process, no scheduler."""
