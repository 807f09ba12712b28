"""The HTTP service. Writes go through Temporal; reads come from Postgres and Temporal."""
