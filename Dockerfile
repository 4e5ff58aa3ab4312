# ServerlessOS CI image: Debian 12 bookworm + Node 20 + everything scripts/setup-host.sh installs
# (build tools, rdma-core, etcd, nftables, qemu for the soft-RoCE VM, CRIU 4.1.1 + libcriu).
#
#   docker build -t serverlessos-ci .                 (--build-arg SETUP_FLAGS=--no-vm: no VM kernel/qemu)
#   docker run --rm --privileged serverlessos-ci      (runs `npm test`)
#
# Tests need a privileged container (CRIU dump/restore, namespaces, cgroups, nftables,
# /dev/userfaultfd). RDMA tests: on a host with rdma_rxe loaded and an rxe link
# (`rdma link add rxe0 type rxe netdev eth0`), run with --privileged --network host and they use
# that device directly (test/rdma/softroce.test.ts looks in /sys/class/infiniband); elsewhere they
# boot the project's qemu soft-RoCE VM (scripts/vm/), whose kernel setup-host.sh unpacks. Kernel settings cannot be made at build time: /proc/sys is read-only during
# `docker build`, so setup-host.sh only warns about fs.pipe-max-size there. fs.pipe-max-size is not
# namespaced (docker run --sysctl cannot set it): set it to 4194304 on the docker host, or run
#   docker run --rm --privileged serverlessos-ci bash -c 'scripts/setup-host.sh && npm test'
# (a re-run of setup-host.sh is a no-op apart from applying the sysctl).
FROM node:20-bookworm

# Debian's nodejs in bookworm is 18; this base image carries Node 20 in /usr/local. The project's
# .npmrc points node-gyp at /usr (Debian layout of the dev hosts); the headers here are under
# /usr/local/include/node, and an npm_config_* variable overrides the project .npmrc.
ENV npm_config_nodedir=/usr/local

WORKDIR /app

# Host setup first, from the setup scripts alone, so that this slow layer (CRIU build) stays cached
# until the scripts change. The VM kernel lands in /app/.cache/vm/kernel (.cache is dockerignored,
# so the later COPY leaves it alone). CRIU's build tree and the apt lists are dropped afterwards.
ARG SETUP_FLAGS=""
COPY scripts/setup-host.sh scripts/setup-host.sh
COPY scripts/criu/ scripts/criu/
RUN scripts/setup-host.sh $SETUP_FLAGS \
 && rm -rf /var/cache/serverlessos/criu /var/lib/apt/lists/*

COPY . .
RUN npm ci && npm run build

CMD ["npm", "test"]
