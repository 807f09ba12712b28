"""Metrics for Prometheus, traces for OpenTelemetry, and the health probes they sit beside."""
