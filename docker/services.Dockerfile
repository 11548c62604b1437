# The infrastructure images of the compose stack, built by `scripts/images.sh services` on the debootstrap base
# (no registry): Debian's postgresql and redis-server, the cached MinIO server binary, an sshd "Pi".
#   --target postgres | redis | minio | device
# Context: a directory assembled by scripts/images.sh (docker/services/* and the MinIO binary as ./minio).
# Each image is one RUN on the base (vfs copies the whole filesystem per layer). Entrypoints honour the
# official images' variables (POSTGRES_USER/PASSWORD/DB, MINIO_ROOT_USER/PASSWORD), so the official images
# can replace these through the EDGEOPS_*_IMAGE variables of docker-compose.yml.
ARG BASE_IMAGE=edgeops/base:bookworm-amd64
FROM ${BASE_IMAGE} AS apt-base
ENV DEBIAN_FRONTEND=noninteractive

FROM apt-base AS postgres
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
RUN --mount=type=bind,target=/tmp/ctx \
    set -eu; apt-get update -q; apt-get install -y -q --no-install-recommends postgresql-15; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/lib/postgresql/15; \
    install -m 0755 /tmp/ctx/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh; \
    mkdir -p "$PGDATA" /run/postgresql; chown -R postgres:postgres /var/lib/postgresql /run/postgresql
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]

FROM apt-base AS redis
RUN set -eu; apt-get update -q; apt-get install -y -q --no-install-recommends redis-server; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/*; mkdir -p /data; chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes"]

FROM ${BASE_IMAGE} AS minio
RUN --mount=type=bind,target=/tmp/ctx \
    set -eu; install -m 0755 /tmp/ctx/minio /usr/local/bin/minio; mkdir -p /data; minio --version
ENV MINIO_UPDATE=off MINIO_BROWSER=on
EXPOSE 9000 9001
ENTRYPOINT ["/usr/local/bin/minio"]
CMD ["server", "/data", "--console-address", ":9001"]

# A simulated x86 Raspberry Pi: sshd (key-only), python3 + venv; the host key and authorized_keys come from the
# stack's keys volume (see docker-compose.yml x-device), the deploy root from the device's own volume.
# The hash-locked device runtime (tasks/device/runtime.lock) is baked in at /opt/edgeops/runtimes/<runtime_key>/
# with its ready marker written last, exactly as DeviceRuntime.provision() leaves it; the compose connections set
# extra.runtime_root=/opt/edgeops/runtimes (outside the home volume, which would shadow it), so provisioning
# finds it ready and never runs pip: containers on the compose network have no route to PyPI on an engine
# started with --iptables=false (no NAT). scripts/images.sh writes runtime-key and runtime.lock into the
# context; a new lock changes the inputs label and rebuilds the image.
FROM apt-base AS device
RUN --mount=type=bind,target=/tmp/ctx \
    set -eu; apt-get update -q; apt-get install -y -q --no-install-recommends openssh-server; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /etc/ssh/ssh_host_*; \
    useradd --uid 1000 --create-home --shell /bin/bash pi; usermod -p "*" pi; mkdir -p /run/sshd; chmod 0755 /run/sshd; \
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ntimeout = 180\ndisable-pip-version-check = true\n' > /etc/pip.conf; \
    echo edgeops-pi > /etc/hostname; \
    rt="/opt/edgeops/runtimes/$(cat /tmp/ctx/runtime-key)"; mkdir -p /opt/edgeops/runtimes; \
    python3 -m venv "$rt"; \
    cp /tmp/ctx/runtime.lock "$rt/runtime.lock"; \
    "$rt/bin/pip" install -q --no-input --require-hashes --no-deps --only-binary=:all: --no-cache-dir \
      -r "$rt/runtime.lock"; \
    "$rt/bin/python" -c 'import ai_edge_litert.interpreter, numpy'; \
    cp /tmp/ctx/runtime.lock "$rt/.edgeops-ready"; \
    chown pi:pi /opt/edgeops/runtimes
EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]
