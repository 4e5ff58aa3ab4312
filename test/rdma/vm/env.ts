// Where the in-VM RDMA tests run: the device, its IPv4 address and that
// address's GID index, from scripts/vm/rdma-env.sh (the soft-RoCE VM's
// rxe0 / 10.0.2.15 / 1 by default; a host's own device when run there).
export const DEV = process.env.SOS_RDMA_DEVICE ?? 'rxe0';
export const HOST = process.env.SOS_RDMA_ADDR ?? '10.0.2.15';
export const GID_INDEX = Number(process.env.SOS_RDMA_GID_INDEX ?? 1);
/**
 * How long a test waits for a peer process's next line. It bounds a hang only: under TCG, on a host
 * busy with other tests, a node process took over 120 s to start and connect (seen in CI).
 */
export const PEER_WAIT_MS = 300_000;
