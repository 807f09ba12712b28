"""grantflow: innovation grants and pilot projects as durable Temporal workflows over Postgres."""
