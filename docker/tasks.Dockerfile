# The step image: `edgeops step <name> ...` with TensorFlow and LiteRT, without Airflow.
#
#   scripts/images.sh tasks     (BuildKit: the RUN --mount lines need it; Debian's docker.io CLI has it)
#   docker run --rm --network host IMAGE step train --run-id r1 --profile tiny
#
# Works on python:3.11-slim-bookworm (python3 in /usr/local/bin) and on edgeops/base:bookworm-amd64
# (debootstrap, python3 in /usr/bin, PEP 668 marked): everything goes into its own venv. No `# syntax`
# line on purpose: it would pull a frontend image from a registry; the engine's built-in frontend has
# RUN --mount. The host CA bundle may come in as the build secret `ca_bundle` (only pip sees it; it is
# not stored in any layer); edgeops/base already has it and sets PIP_CERT.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG PIP_VERSION=26.3
ARG SETUPTOOLS_VERSION=84.2.1
ENV PATH=/opt/edgeops/venv/bin:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin} \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Early, on the small base: with vfs a WORKDIR after the TensorFlow layer costs another full copy of it.
WORKDIR /home/edgeops

# Dependencies only (the layer that holds TensorFlow): it depends on these three files and nothing in tasks/.
# The wheels are kept in a BuildKit cache mount used as a wheelhouse (`pip download -d` skips the files it
# already has; pip's own HTTP cache stores nothing when PyPI responses come without cache headers, as they
# do through this machine's proxy), so a rebuild of this layer downloads only the wheels that changed.
COPY pyproject.toml constraints.txt README.md /opt/edgeops/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    useradd --no-create-home --home-dir /home/edgeops --uid 1000 --user-group --shell /bin/bash edgeops; \
    cp -a /etc/skel/. /home/edgeops/; chown -R edgeops:edgeops /home/edgeops; \
    python3 -m venv /opt/edgeops/venv; \
    wheels=/root/.cache/pip/wheelhouse; mkdir -p "$wheels"; \
    pip download -q -d "$wheels" "pip==${PIP_VERSION}"; \
    pip install -q --no-index --find-links "$wheels" "pip==${PIP_VERSION}"; \
    python -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        /opt/edgeops/pyproject.toml > /opt/edgeops/requirements.txt; \
    pip download -q -d "$wheels" -c /opt/edgeops/constraints.txt \
        -r /opt/edgeops/requirements.txt "setuptools==${SETUPTOOLS_VERSION}"; \
    pip install -q --no-index --find-links "$wheels" -c /opt/edgeops/constraints.txt \
        -r /opt/edgeops/requirements.txt "setuptools==${SETUPTOOLS_VERSION}"

# The code: the package itself. Dependencies are already satisfied; --no-index makes sure nothing is
# downloaded or reinstalled here (a new dependency changes pyproject.toml, which rebuilds the layer above).
# A read-write bind mount instead of COPY: with the vfs storage driver every layer is a full copy of the
# image, and the in-tree build's egg-info/ and build/ are discarded with the mount.
RUN --mount=type=bind,target=/tmp/edgeops-src,rw \
    set -eu; \
    pip install -q --no-index --no-build-isolation -c /opt/edgeops/constraints.txt /tmp/edgeops-src; \
    pip check; \
    edgeops config --profile tiny >/dev/null; \
    python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("airflow") is not None)'

ARG CODE_VERSION=unknown
ARG SOURCE_HASH=unknown
ENV EDGEOPS_CODE_VERSION=${CODE_VERSION}
LABEL org.edgeops.source-hash=${SOURCE_HASH} \
      org.edgeops.code-version=${CODE_VERSION} \
      org.opencontainers.image.revision=${CODE_VERSION} \
      org.opencontainers.image.title="edgeops step image"

USER edgeops
ENTRYPOINT ["edgeops"]
CMD ["--help"]
