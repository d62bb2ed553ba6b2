# The Rollwatch image: one Python application, run as `rollwatch <command>` (worker, register sync, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md* ./
COPY processors ./processors
COPY schemas ./schemas
COPY config ./config
COPY sinks ./sinks
COPY web ./web
COPY streams ./streams
COPY replay ./replay
COPY generator ./generator
COPY clients/python/rollwatch_client ./clients/python/rollwatch_client
COPY cli ./cli
COPY localbroker ./localbroker
RUN pip install '.[postgres]'

# Table state (RocksDB) lives under /var/lib/rollwatch, a volume in docker-compose.yml.
RUN useradd --system --uid 10001 --home-dir /var/lib/rollwatch --create-home rollwatch
USER rollwatch
WORKDIR /var/lib/rollwatch
ENV ROLLWATCH_DATA_DIR=/var/lib/rollwatch/worker

EXPOSE 6066 9108
ENTRYPOINT ["rollwatch"]
CMD ["worker"]
