"""Plain, parameterised SQL: one module per table group, the asyncpg connection passed in.

Every module-level constant whose name ends in `_SQL` is a statement the code runs;
tests/test_migrations.py prepares each against a freshly migrated database."""

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: what writes in a transaction take.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# Or the pool itself, for a single statement: it borrows a connection for that statement only,
# so a request never holds one while it waits on Temporal.
Db: TypeAlias = Conn | asyncpg.Pool
