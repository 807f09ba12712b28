"""Deterministic lifecycle logic: no I/O, no clock but workflow.now().

One stage, a few small modules: `<stage>.py` is the workflow (its `run` reads as the stage's
lifecycle, then its Updates, Signals and Queries); `<stage>_book.py`, where there is one, its
state and the writes that record each change; `<stage>_rules.py` its rules and texts as pure
functions (screening's in `intake.py`), tested without Temporal. Reporting is the agreement
workflow's part in `reporting.py`, screening the application workflow's in `screening.py`.
Shared: `ids.py` (every workflow id), `options.py` (`write`, the one way to run a database
write), `deadline.py` (waiting for deadlines an admin may move)."""
