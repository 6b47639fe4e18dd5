# The disco server image: `disco-server` on 0.0.0.0:8080 as a non-root user, data in a volume.
#
#   docker build -t disco .            (or: podman build --format docker -t disco .)
#   docker run -p 8080:8080 -v disco-data:/var/lib/disco disco
#
# Configure with DISCO_* environment variables (`disco-server --help` lists them all).
# BASE_IMAGE: any Debian bookworm image; scripts/container.sh builds an equivalent of
# debian:bookworm-slim from Debian's packages where Docker Hub is out of reach.
ARG BASE_IMAGE=debian:bookworm-slim

# ---- runtime: the Python interpreter only (no compiler, no pip, no node) ----
FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*

# ---- deps: a virtualenv holding the server's dependencies (reused while pyproject.toml holds) ----
FROM runtime AS deps
# Set by scripts/container.sh where HTTPS goes through a local CA (unset: the system's CAs).
ARG PIP_CERT
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/disco
WORKDIR /src
COPY pyproject.toml ./
RUN mkdir -p src/disco && touch README.md src/disco/__init__.py \
 && /opt/disco/bin/pip install . \
 && /opt/disco/bin/pip uninstall -y disco \
 && rm -rf src README.md build

# ---- build: disco itself (and the web app) into that virtualenv ----
FROM deps AS build
ARG PIP_CERT
ARG NODE_EXTRA_CA_CERTS
COPY . .
# The web app's assets ship inside the package (src/disco/web/static). They are built here from
# web/ unless the build context already holds a build of them (scripts/bootstrap.sh makes one).
RUN if [ -f web/package.json ] && [ ! -f src/disco/web/static/index.html ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends nodejs npm \
      && (cd web && npm ci --no-audit --no-fund && npm run build) \
      && rm -rf web/node_modules /var/lib/apt/lists/*; \
    fi
RUN /opt/disco/bin/pip install --no-deps . \
 && /opt/disco/bin/python -c "import disco.server.app" \
 && /opt/disco/bin/pip uninstall -y pip setuptools

# ---- the image ----
FROM runtime
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/disco --shell /usr/sbin/nologin disco \
 && mkdir -p /var/lib/disco \
 && chown disco:disco /var/lib/disco
COPY --from=build /opt/disco /opt/disco
ENV PATH=/opt/disco/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DISCO_HOST=0.0.0.0 \
    DISCO_PORT=8080 \
    DISCO_DATA_DIR=/var/lib/disco
USER disco
WORKDIR /var/lib/disco
VOLUME ["/var/lib/disco"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["python3", "-m", "disco.cli.healthcheck"]
# disco-server is PID 1: `docker stop` (SIGTERM) reaches it and it shuts down gracefully.
ENTRYPOINT ["disco-server"]
