# The feed server's image: `docker build -t live-session-feed .` (docker-compose.yml builds it).
# It runs `feed serve` on port 8080; give it a Redis with FEED_REDIS_URL (without one it starts
# the embedded Redis, kept in /var/lib/feed/var). docs/deployment.md tells the whole story.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package is built from (.dockerignore keeps everything else out of the context).
WORKDIR /src
# The locked versions first (their own layer, so a code change does not reinstall them), hashes
# checked; then the package itself, built with the locked setuptools and nothing else.
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt
COPY pyproject.toml README.md ./
COPY feed feed
COPY publisher publisher
COPY web web
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && cd / && rm -rf /src \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/feed --create-home \
       --shell /usr/sbin/nologin feed

# Not root: the server needs no privilege (8080 is not a privileged port).
USER feed
WORKDIR /var/lib/feed

EXPOSE 8080

# Liveness only (/healthz never asks Redis); /readyz tells whether Redis is reachable. The slim
# image has no curl: Python's urllib does the request, and any error or non-2xx status fails.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

# SIGTERM: websockets are closed with 1001 (clients reconnect elsewhere and resume), in-flight
# requests get up to 5 s, then the process exits 0.
STOPSIGNAL SIGTERM
CMD ["feed", "serve", "--host", "0.0.0.0", "--port", "8080"]
