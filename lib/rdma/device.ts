// The RDMA devices of this host and whether libibverbs loads.
import { native, type DeviceInfo } from '../native/index.js';

/** RDMA devices of this host ([] when rdma-core or kernel RDMA is missing). */
export function devices(): DeviceInfo[] {
  return native.rdma.devices();
}
/** Whether libibverbs could be loaded, and why not. */
export function status(): { library: boolean; reason?: string } {
  return native.rdma.status();
}
