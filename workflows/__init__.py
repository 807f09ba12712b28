"""Deterministic lifecycle logic: no I/O, no clock but workflow.now()."""
