# vxplane controller image: REST API on 8080, OpenFlow 1.3 on 6653.
# The entry point applies the database migrations, then runs `vxplane controller`.
#   docker build -t vxplane .        (or: docker compose up -d)

# --- build: wheels for vxplane and every dependency (a compiler is here, not in the image) ---
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY controller ./controller
COPY hostagent ./hostagent
COPY vxcommon ./vxcommon
COPY migrations ./migrations
RUN pip wheel --wheel-dir /wheels .

# --- runtime ---
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="vxplane controller" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VXPLANE_DB_URL=sqlite:////var/lib/vxplane/vxplane.db
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels vxplane \
 && groupadd --system --gid 10001 vxplane \
 && useradd --system --uid 10001 --gid vxplane --home-dir /var/lib/vxplane --create-home \
      --shell /usr/sbin/nologin vxplane
COPY --chmod=0755 docker/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER vxplane
WORKDIR /var/lib/vxplane
VOLUME ["/var/lib/vxplane"]
EXPOSE 8080 6653
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["docker-entrypoint.sh"]
# Runs `vxplane db upgrade --db $VXPLANE_DB_URL`, then
# `vxplane controller --db $VXPLANE_DB_URL --api 0.0.0.0:8080 --openflow 0.0.0.0:6653`.
CMD ["controller"]
