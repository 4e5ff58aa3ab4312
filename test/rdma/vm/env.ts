// Where the in-VM RDMA tests run: the device, its IPv4 address and that
// address's GID index, from scripts/vm/rdma-env.sh (the soft-RoCE VM's
// rxe0 / 10.0.2.15 / 1 by default; a host's own device when run there).
export const DEV = process.env.SOS_RDMA_DEVICE ?? 'rxe0';
export const HOST = process.env.SOS_RDMA_ADDR ?? '10.0.2.15';
export const GID_INDEX = Number(process.env.SOS_RDMA_GID_INDEX ?? 1);
