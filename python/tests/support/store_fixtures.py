"""Database fixtures (owned by the store room)."""
