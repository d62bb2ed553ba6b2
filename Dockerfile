# The Rollwatch image: one Python application, run as `rollwatch <command>` (worker, register sync, ...).
# Reproducible: every dependency (and the build backend) installed from requirements.lock, pinned with hashes
# (regenerate it with the pip-compile command in its header whenever pyproject.toml's dependencies change).
# The local broker (localbroker/) and the benchmarks (bench/) are development tools and stay out.

# -- build: the project's own wheel, without localbroker ----------------------------------------------------
FROM python:3.11-slim AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
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
# localbroker is not copied: take it out of the distribution's package list for this build.
RUN python -c "import pathlib, re; p = pathlib.Path('pyproject.toml'); text, n = re.subn(r'\"localbroker\",\s*', '', p.read_text()); assert n, 'localbroker not listed'; p.write_text(text)"
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# -- the image ------------------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

# Table state (RocksDB) lives under /var/lib/rollwatch, a volume in docker-compose.yml and Kubernetes.
RUN groupadd --system --gid 10001 rollwatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rollwatch --create-home rollwatch
USER 10001:10001
WORKDIR /var/lib/rollwatch
ENV ROLLWATCH_DATA_DIR=/var/lib/rollwatch/worker

EXPOSE 6066 9108
ENTRYPOINT ["rollwatch"]
CMD ["worker"]
