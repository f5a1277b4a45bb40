# Slipway's own image, for docker-compose.yml: one image, four processes
# (slipway web / worker / beat / router).
#
# The default base is the one `slipway images bootstrap` builds from Debian
# packages, so this builds on a host that reaches no registry. Where a
# registry answers: --build-arg BASE_IMAGE=python:3.12-slim
ARG BASE_IMAGE=slipway/python:3.11
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SLIPWAY_HOME=/var/lib/slipway \
    PATH=/opt/slipway/bin:$PATH

# git: the git blueprint runs `git http-backend` and the hooks; nginx: the
# router's data plane, with the Lua module its balancer needs. No docker CLI: the
# SDK talks to /var/run/docker.sock.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git nginx libnginx-mod-http-lua \
    ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so a change to Slipway's own
# code rebuilds in seconds; the stub package lets setuptools resolve them.
WORKDIR /src
COPY pyproject.toml README* ./
RUN python3 -m venv /opt/slipway \
 && mkdir -p slipway && touch slipway/__init__.py README.md \
 && /opt/slipway/bin/pip install . \
 && /opt/slipway/bin/pip uninstall -y slipway \
 && rm -rf /src/slipway /src/build /src/*.egg-info

COPY slipway ./slipway
RUN /opt/slipway/bin/pip install --no-deps . \
 && rm -rf /src/build /src/*.egg-info \
 && mkdir -p /var/lib/slipway

WORKDIR /var/lib/slipway
EXPOSE 5000
CMD ["slipway", "web"]
