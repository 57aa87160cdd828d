# syntax=docker/dockerfile:1

# Build: a static binary (no cgo), so the runtime image needs no libc.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/tracseq-tx ./cmd/tracseq-tx \
    && mkdir -p /out/data

# Run: distroless static, as the unprivileged "nonroot" user (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tracseq-tx /usr/local/bin/tracseq-tx
# Without DATABASE_URL the service keeps its sagas in a SQLite file here
# (one container on it at a time); docker-compose.yml sets PostgreSQL.
COPY --from=build --chown=65532:65532 /out/data /var/lib/tracseq
VOLUME /var/lib/tracseq
USER nonroot:nonroot
ENV HTTP_ADDR=:8080 TRACSEQ_DATA_DIR=/var/lib/tracseq
EXPOSE 8080
# Liveness without a shell or curl in the image: the binary asks itself.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tracseq-tx", "health", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/tracseq-tx"]
CMD ["serve"]
