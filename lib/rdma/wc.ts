// Work completions as numbers: the layout cq.pollInto() writes, and the names of statuses and opcodes.
import { native } from '../native/index.js';
import { integer } from '../validate.js';

/**
 * Where `cq.pollInto()` puts each field of completion i: `out[i * WC.SLOTS + WC.WR_ID]` and so
 * on. `status` 0 is success (`wcStatusName()` names the others); `opcode` is ibv_wc_opcode
 * (`wcOpcodeName()`); `imm` is valid when `flags & WC.WITH_IMM`.
 */
export const WC = Object.freeze({
  SLOTS: 8,
  WR_ID: 0,
  STATUS: 1,
  OPCODE: 2,
  BYTE_LEN: 3,
  IMM: 4,
  QP_NUM: 5,
  SRC_QP: 6,
  FLAGS: 7,
  WITH_IMM: 2,
  SUCCESS: 0,
});
/** libibverbs' name of a completion status (as `Completion.status`). */
export function wcStatusName(status: number): string {
  return native.rdma.wcStatusStr(integer('status', status, 0, 0xffff));
}
const WC_OPCODES = ['SEND', 'RDMA_WRITE', 'RDMA_READ', 'COMP_SWAP', 'FETCH_ADD', 'BIND_MW', 'LOCAL_INV', 'TSO'];
/** The name of a completion opcode (as `Completion.opcode`). */
export function wcOpcodeName(opcode: number): string {
  if (opcode & 128) return opcode === 129 ? 'RECV_RDMA_WITH_IMM' : 'RECV';
  return WC_OPCODES[opcode] ?? 'OTHER';
}
