# cinch-agent image: the sidecar and the init container (`cinch-agent init`
# needs iptables). Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t cinch-agent .
# The runtime stage installs only the shared libraries the binary links.
FROM debian:12 AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN sh scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build build --target cinch-agent \
 && strip build/bin/cinch-agent

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends android-libboringssl libuv1 \
      libprotobuf-c1 libjansson4 libcurl3-gnutls libnghttp2-14 libyaml-0-2 \
      iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/cinch-agent /usr/bin/cinch-agent
# The agent runs as 1337, the UID the interception rules exempt; the init
# container overrides this to root with NET_ADMIN and NET_RAW only.
USER 1337:1337
ENTRYPOINT ["/usr/bin/cinch-agent"]
