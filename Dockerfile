# reelstream image: `docker build -t reelstream .` (used by deploy/docker-compose.yml and
# deploy/k8s/). Settings come from REELSTREAM_* environment variables. The default command
# runs a worker (port 6066); `api` runs the read API process (port 6067), e.g.
# `docker run reelstream api`: no volume, no tables.
FROM python:3.11-slim

# The code binds 127.0.0.1 unless told otherwise; inside a container that would be
# unreachable, so the image binds all of the container's interfaces, explicitly. What
# reaches them is the deployment's choice: compose publishes on host loopback only,
# Kubernetes adds a NetworkPolicy (docs/operations.md, "Exposure").
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    REELSTREAM_WEB_HOST=0.0.0.0 \
    REELSTREAM_WEB_PORT=6066 \
    REELSTREAM_API_HOST=0.0.0.0 \
    REELSTREAM_API_PORT=6067 \
    REELSTREAM_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY features ./features
COPY online_models ./online_models
RUN pip install . && useradd --uid 10001 --create-home reelstream \
    && mkdir -p /data && chown reelstream /data

USER 10001
VOLUME ["/data"]
EXPOSE 6066
EXPOSE 6067
# A worker answers on 6066, `api` on 6067: healthy when this container's process answers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=1)" \
    || python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:6067/healthz', timeout=1)" || exit 1
ENTRYPOINT ["reelstream"]
CMD ["worker"]
