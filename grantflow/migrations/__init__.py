"""Numbered, forward-only SQL migrations (applied by `grantflow migrate`)."""
