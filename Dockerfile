# lnplugin as a container: the HTTP API beside an LND or Core Lightning node.
#
#   docker build -t lnplugin .
#   docker volume create lnplugin-data
#   docker run --rm -v lnplugin-data:/data lnplugin token create --scope admin --label ops
#   docker run -d --name lnplugin -p 127.0.0.1:8080:8080 -v lnplugin-data:/data \
#       -e LNPLUGIN_NODE=lnd ... lnplugin
#
# Settings are LNPLUGIN_* variables (README, "Settings"); docs/deploy.md has the
# whole recipe. Two stages: the first builds wheels (for lnplugin and every
# dependency) with pip's build tools, the second installs only those wheels into
# a clean image, so no compiler, cache or source tree ships.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# What the wheel is built from, and nothing else (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY lnplugin ./lnplugin
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="lnplugin" \
      org.opencontainers.image.description="Alby-Wallet-API-compatible invoice service for LND and Core Lightning" \
      org.opencontainers.image.licenses="MIT"
# A fixed, unprivileged uid/gid, so a bind-mounted /data can be chowned to it (10001:10001).
RUN groupadd --system --gid 10001 lnplugin \
    && useradd --system --uid 10001 --gid lnplugin --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin lnplugin \
    && install -d -m 0700 -o lnplugin -g lnplugin /data
COPY --from=build /wheels /wheels
# Only the wheels built above (--no-index): nothing is fetched at this stage.
RUN python -m venv /opt/lnplugin \
    && /opt/lnplugin/bin/pip install --no-cache-dir --no-index --find-links=/wheels lnplugin \
    && rm -rf /wheels
# LNPLUGIN_BOOTSTRAP_TOKEN holds no secret: it is the switch that stops serve printing
# a first admin token to the container log (hadolint's DL3064 matches the word TOKEN).
# hadolint ignore=DL3064
ENV PATH=/opt/lnplugin/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LNPLUGIN_DATA_DIR=/data \
    LNPLUGIN_HOST=0.0.0.0 \
    LNPLUGIN_PORT=8080 \
    LNPLUGIN_BOOTSTRAP_TOKEN=false
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# GET /health needs no token; the image has no curl, so Python asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LNPLUGIN_PORT', '8080'), timeout=4)"]
# SIGTERM is lnplugin's clean stop; it exits within 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lnplugin"]
CMD ["serve"]
