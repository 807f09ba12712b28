"""The embedded development stack: PostgreSQL and Temporal from PyPI wheels, demo users."""
