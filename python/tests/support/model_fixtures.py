"""Model fixtures (owned by the ml room)."""
