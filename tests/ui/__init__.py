"""The Offer Sync page: its routes and auth on a live api-server, and a real browser."""
