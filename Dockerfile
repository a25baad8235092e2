# enphase-mqtt as a container: a Rust builder stage, then a small Debian runtime holding only the
# binary, CA certificates and wget (for the health check), run as a non-root user with its state
# in /data.
#
#   docker build -t enphase-mqtt .
#   docker run -d --name enphase-mqtt --restart unless-stopped \
#       -v enphase-mqtt-data:/data -p 8099:8099 enphase-mqtt
#
# Put the config at /data/config.yaml (see config.example.yaml) with
#   http:
#     listen: 0.0.0.0:8099
#   state_dir: /data/state
# The bridge runs as uid 1000: a host folder mounted at /data instead of a volume must be writable
# by it (chown 1000 it, or pass --user). Other commands run against the same volume, e.g.
#   docker run --rm -it -v enphase-mqtt-data:/data enphase-mqtt check-config
#   docker exec enphase-mqtt enphase-mqtt auth status

# ---- builder ---------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src

# Dependencies first, against stub sources, so that this layer is rebuilt only when Cargo.toml or
# Cargo.lock change. The build command is the one CI runs. Cargo reads the manifest only when
# every target it declares exists, so the benchmarks come along (they are not built); a build.rs
# would have to as well. tests/addon.rs checks this against Cargo.toml.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. COPY keeps the files' old modification times, which can be older than the stub
# build above; touching them makes cargo rebuild our crate instead of linking the stub.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/enphase-mqtt /out/enphase-mqtt

# ---- runtime ---------------------------------------------------------------------------------
# The same Debian release as the builder, so the binary finds the glibc it was linked against.
FROM debian:bookworm-slim

# ca-certificates: the system roots for HTTPS to Enphase and for `mqtt.tls: true`.
# wget: the health check's HTTP client (no shell tools beyond the base image otherwise).
# Versions are left to the Debian release pinned above, which only ships security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 enphase \
    && useradd --uid 1000 --gid enphase --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin enphase \
    && mkdir -p /data \
    && chown enphase:enphase /data

COPY --from=builder /out/enphase-mqtt /usr/local/bin/enphase-mqtt

# Tokens, the hit ledger and the lock file must survive upgrades: keep /data on a volume. The
# working directory is /data too, so the default `state_dir: ./state` lands in /data/state.
VOLUME ["/data"]
WORKDIR /data
# Numeric, so that a runtime that checks "non-root" (e.g. Kubernetes runAsNonRoot) can tell.
USER 1000:1000

# Every command (`auth status`, `check-config`, …) finds the config without -c.
ENV ENPHASE_MQTT_CONFIG=/data/config.yaml \
    ENPHASE_MQTT_HEALTHCHECK_URL=http://127.0.0.1:8099/healthz

# The status and consent page, when the config has `http: listen: 0.0.0.0:8099`.
EXPOSE 8099

# /healthz answers 200 while the MQTT session is up and the Enphase login is usable, 503 otherwise.
# It exists only when the config turns the page on (`http: listen: 0.0.0.0:8099`); without the page
# this probe fails and Docker marks the container unhealthy, which is meant as a hint to turn the
# page on (it is also where you connect to Enphase). To run without the page, or with the page on
# another port, set ENPHASE_MQTT_HEALTHCHECK_URL to the right address, or to an empty value to turn
# the probe off (an empty value counts as healthy).
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "[ -z \"$ENPHASE_MQTT_HEALTHCHECK_URL\" ] || wget -q -T 8 -t 1 -O /dev/null \"$ENPHASE_MQTT_HEALTHCHECK_URL\" || exit 1"]

ENTRYPOINT ["enphase-mqtt"]
CMD ["run", "--config", "/data/config.yaml"]
