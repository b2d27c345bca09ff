# One image for both roles: `raftkv serve` (a member, the default command) and
# `raftkv operator` (the kopf operator; the Helm chart and manifests pass it as args).
#
# The builder turns the source into a wheel and installs that wheel, with the
# `operator` extra, into a virtualenv; the runtime stage gets only the virtualenv.
# tests/shipping/test_install_path.py runs this same path (wheel -> fresh venv ->
# `raftkv --version` -> a member that serves, then stops on SIGTERM) in CI, where no
# Docker engine is available.
#
# Both stages must use the same base image: the venv's interpreter is a symlink to the
# base image's /usr/local/bin/python3.

FROM python:3.11.13-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest of the tree out).
COPY pyproject.toml README.md ./
COPY node ./node
COPY operator ./operator

# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is needed.
# The wheel's own version pins (pyproject.toml) bound what gets resolved here.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/raftkv \
    && /opt/raftkv/bin/pip install --no-cache-dir "$(find /wheels -name 'raftkv-*.whl')[operator]" \
    && /opt/raftkv/bin/raftkv --version


FROM python:3.11.13-slim-bookworm

LABEL org.opencontainers.image.title="raftkv" \
      org.opencontainers.image.description="A Raft-replicated key-value store and its Kubernetes operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"

# Defaults for a member in a container: listen on every interface (the CLI's own
# default is loopback) and keep state in the volume. The operator sets all of these
# explicitly for the pods it creates; they only matter for a bare `docker run`.
# PYTHONDONTWRITEBYTECODE: the root filesystem may be read-only (bytecode was compiled
# at install time in the builder).
ENV PATH=/opt/raftkv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RAFTKV_DATA_DIR=/var/lib/raftkv \
    RAFTKV_LISTEN_CLIENT=0.0.0.0:2379 \
    RAFTKV_LISTEN_PEER=0.0.0.0:2380

# uid/gid 10001 = objects.MEMBER_UID: the pod securityContext runs as it and makes the
# data volume group-writable for it with fsGroup.
RUN groupadd --system --gid 10001 raftkv \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/raftkv --shell /usr/sbin/nologin raftkv \
    && mkdir -p /var/lib/raftkv \
    && chown 10001:10001 /var/lib/raftkv

COPY --from=builder /opt/raftkv /opt/raftkv

USER 10001:10001
WORKDIR /var/lib/raftkv
VOLUME /var/lib/raftkv
EXPOSE 2379 2380

# Exec form, no shell in between: `raftkv` is PID 1 and receives SIGTERM itself. The
# member handles it (hands leadership away, flushes the WAL, exits 0); so does kopf.
STOPSIGNAL SIGTERM
ENTRYPOINT ["raftkv"]
CMD ["serve"]
