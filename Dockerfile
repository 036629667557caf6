# Multi-stage build: compile in the Rust image, run on Debian slim with Debian's nats-server.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin prism-broker

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nats-server curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/prism-broker --uid 10001 prism
COPY --from=build /src/target/release/prism-broker /usr/local/bin/prism-broker
COPY config/docker.yaml /etc/prism-broker/broker.yaml
COPY routes.d /etc/prism-broker/routes.d
COPY transforms /etc/prism-broker/transforms
# The MarketPrism drop-in (README: "Replacing the Python message-broker"); its links point
# into routes.d/ next to it.
COPY config/marketprism.yaml /etc/prism-broker/marketprism.yaml
COPY routes.marketprism.d /etc/prism-broker/routes.marketprism.d
USER prism
WORKDIR /var/lib/prism-broker
ENV ENVIRONMENT=production
EXPOSE 8086 4222 8222
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8086/health || exit 1
ENTRYPOINT ["prism-broker", "--config", "/etc/prism-broker/broker.yaml"]
CMD ["serve"]
