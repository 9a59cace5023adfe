# syntax=docker/dockerfile:1
# The certinext operator image: `docker build -t certinext-operator .`
# Runs as the distroless nonroot user (65532); the Deployment adds a read-only root file system.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the registry and build directory between builds; the binary is copied
# out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin certinext \
 && cp target/release/certinext /usr/local/bin/certinext

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.source="https://github.com/certinext/certinext-operator" \
      org.opencontainers.image.description="A multi-tenant certificate platform for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /usr/local/bin/certinext /usr/local/bin/certinext
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/certinext"]
CMD ["run"]
