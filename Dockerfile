# syntax=docker/dockerfile:1
# One image for the four services of the Remote Support Suite; one build target (and entrypoint) per service:
#   docker build --target authz -t remote-support-suite/authz .       (likewise depot, connections, gateway)
# Every target runs `python -m <its module>`; `--help` lists the environment variables it reads.
# Configuration comes from environment variables only; secrets from mounted files (see docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS runtime
# The uid the services run as. `make up` builds with the owner of deploy/secrets/ so that the bind-mounted
# secrets (mode 0600 on the host, as compose mounts them unchanged) are readable inside, and by nobody else.
ARG RS_UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RS_HOST=0.0.0.0 \
    RS_VAR_DIR=/var/lib/rs \
    RS_PROFILE=production
WORKDIR /app

# Dependencies first (pinned in pyproject.toml, and only there), so that a source change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code, the contracts, and the generated stubs (never committed; generated here like `make gen` does).
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
COPY rsctl ./rsctl
RUN mkdir -p gen/remotesupport gen/third_party/google/api && touch gen/remotesupport/__init__.py \
    && pip install --no-deps -e . \
    && api=$(python -c 'import os, google.api.field_behavior_pb2 as m; print(os.path.dirname(m.__file__))') \
    && cp "$api/field_behavior.proto" "$api/resource.proto" gen/third_party/google/api/ \
    && python -m grpc_tools.protoc -Iprotos -Igen/third_party --python_out=gen --pyi_out=gen --grpc_python_out=gen \
        $(find protos -name '*.proto') \
    && find gen/remotesupport -type d -exec touch {}/__init__.py \; \
    && python -m compileall -q services gateway rsctl gen

RUN useradd --uid "${RS_UID}" --user-group --no-create-home --home-dir /var/lib/rs --shell /usr/sbin/nologin rs \
    && mkdir -p /var/lib/rs/secrets /var/lib/rs/mail /var/lib/rs-tokens /run/certs \
    && chown rs:rs /var/lib/rs /var/lib/rs/secrets /var/lib/rs/mail /var/lib/rs-tokens \
    && chmod 0700 /var/lib/rs /var/lib/rs/secrets /var/lib/rs/mail /var/lib/rs-tokens
USER rs
STOPSIGNAL SIGTERM

FROM runtime AS authz
ENV RS_SERVICE=authz
EXPOSE 50052
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "services.kit.healthcheck", "--service", "authz", "127.0.0.1:50052"]
ENTRYPOINT ["python", "-m", "services.authz.server"]

FROM runtime AS depot
ENV RS_SERVICE=depot
EXPOSE 50053
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "services.kit.healthcheck", "--service", "depot", "127.0.0.1:50053"]
ENTRYPOINT ["python", "-m", "services.depot.server"]

FROM runtime AS connections
ENV RS_SERVICE=connections
EXPOSE 50054
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "services.kit.healthcheck", "--service", "connections", "127.0.0.1:50054"]
ENTRYPOINT ["python", "-m", "services.connections.server"]

FROM runtime AS relay
ENV RS_SERVICE=relay
EXPOSE 50055
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "services.kit.healthcheck", "--service", "relay", "127.0.0.1:50055"]
ENTRYPOINT ["python", "-m", "services.connections.relay"]

FROM runtime AS gateway
ENV RS_SERVICE=gateway
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "services.kit.healthcheck", "--service", "gateway", "127.0.0.1:50051"]
ENTRYPOINT ["python", "-m", "gateway.server"]
