# Portico: the host binary plus the example plugins.
# Build:  docker build -t portico .
# Run:    docker run -p 8080:8080 -e PORTICO_JWT_SECRET=change-me portico
# (Not built in this repository's CI: the CI machine has no Docker engine.)

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release -p portico \
 && cargo build --target wasm32-wasip2 --profile plugin -p echo -p chat -p counter -p feed \
 && mkdir -p /out/plugins \
 && cp target/release/portico /out/ \
 && cp target/wasm32-wasip2/plugin/echo.wasm target/wasm32-wasip2/plugin/chat.wasm \
       target/wasm32-wasip2/plugin/counter.wasm target/wasm32-wasip2/plugin/feed.wasm /out/plugins/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/portico portico \
 && mkdir -p /var/lib/portico/cache \
 && chown -R portico /var/lib/portico
COPY --from=build /out/portico /usr/local/bin/portico
COPY --from=build /out/plugins /etc/portico/plugins
USER portico
ENV PORTICO_LISTEN=0.0.0.0:8080 \
    PORTICO_PLUGINS=/etc/portico/plugins \
    PORTICO_CACHE_DIR=/var/lib/portico/cache \
    PORTICO_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["portico"]
CMD ["serve"]
