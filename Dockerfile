# Build: a static binary. (No container engine on the development machines:
# this file is kept simple and is not built in CI.)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /rulegen ./cmd/rulegen

# Runtime: the iptables tools (both flavours) for the iptables backend and
# nft for debugging; the nftables backend itself talks netlink.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables conntrack \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /rulegen /usr/local/bin/rulegen
# kube-proxy's DaemonSet (kubeadm's) runs /usr/local/bin/kube-proxy: the same
# binary answers there, so that swapping the image is the whole switch.
RUN ln -s rulegen /usr/local/bin/kube-proxy
ENTRYPOINT ["/usr/local/bin/rulegen"]
