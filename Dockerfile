# grantflow: one image for `grantflow worker`, `grantflow api` and `grantflow migrate`
# (docker-compose.yml runs all three from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user to run as; it owns only its home directory.
RUN useradd --create-home --home-dir /home/grantflow --uid 10001 --user-group grantflow

WORKDIR /src
COPY . .
# With the tracing extra: OTEL_EXPORTER_OTLP_ENDPOINT turns traces on without a rebuild.
RUN pip install --no-cache-dir '.[tracing]' \
    && rm -rf /src

USER grantflow
WORKDIR /home/grantflow

EXPOSE 8000

# Exec form, so grantflow is PID 1 and receives SIGTERM itself (it shuts down gracefully).
ENTRYPOINT ["grantflow"]
CMD ["api", "--host", "0.0.0.0"]
