# syntax=docker/dockerfile:1
# vmmem operator image. No build step: Node 24 runs the TypeScript sources directly (type
# stripping), so the image holds src/ and the production dependencies only.
#
#   docker build -t vmmem:dev .
#   docker run --rm vmmem:dev validate -f /app/examples     # any vmmem subcommand
#
# Pin the base image by digest for reproducible builds:
#   docker build --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:<digest> .
ARG NODE_IMAGE=node:24-bookworm-slim

# ---- dependencies: production only (no TypeScript, no eslint, no npm `node` package) ----------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency needs an install script; the `node` devDependency
# (Node 24 for development machines) has one and is omitted anyway.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime ----------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# openssh-client: libvirt's qemu+ssh:// and xen+ssh:// transports run `ssh`.
# ca-certificates: TLS to vCenter/ESX and libvirt hosts signed by public CAs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 vmmem \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin vmmem
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY src ./src
COPY examples ./examples
LABEL org.opencontainers.image.title="vmmem" \
      org.opencontainers.image.description="Kubernetes operator that keeps virtual machines' memory where their owners declare it (QEMU/KVM, Xen, VMware ESX)." \
      org.opencontainers.image.licenses="Apache-2.0"
# Files are root-owned and read-only to the process; run with a read-only root filesystem and a
# writable /tmp (deploy/base/deployment.yaml does).
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["node", "/app/src/cli/main.ts"]
CMD ["run"]
