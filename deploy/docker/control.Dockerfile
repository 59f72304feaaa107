# cinch-control image. Build from the repository root:
#   docker build -f deploy/docker/control.Dockerfile -t cinch-control .
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN sh scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build build --target cinch-control cinchctl \
 && strip build/bin/cinch-control build/bin/cinchctl

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends android-libboringssl libuv1 \
      libprotobuf-c1 libjansson4 libcurl3-gnutls libnghttp2-14 libyaml-0-2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/cinch-control /src/build/bin/cinchctl /usr/bin/
USER 65532:65532
ENTRYPOINT ["/usr/bin/cinch-control"]
