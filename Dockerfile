# mudbase-exporter: multi-stage build, a venv copied into a slim runtime, non-root user.
# Build: docker build -t mudbase-exporter .
# Run:   docker run -p 9717:9717 -e MUDBASE_TOKEN=... -v $PWD/config.yaml:/etc/mudbase-exporter/config.yaml:ro mudbase-exporter
#        (the image runs as user 10001 and works with --read-only)
# Demo:  docker run -p 9717:9717 mudbase-exporter --demo --web.listen-address=:9717

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=build /opt/venv /opt/venv
COPY config.example.yaml /etc/mudbase-exporter/config.yaml
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
# the default --config.file (config.yaml) resolves here: `docker run IMAGE --config.check` works
WORKDIR /etc/mudbase-exporter
EXPOSE 9717
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9717/-/healthy', timeout=3)"]
ENTRYPOINT ["mudbase-exporter"]
