/**
 * `memory.adoptProcess(pid, handover, options)`: serve the arena of a process that another monitor
 * detached (ProgramRun.detach, detachArena): the same process after a detach, or its copy restored by CRIU
 * on another machine. The monitor connects to the process's shim (its abstract control socket, checked to
 * be held by `pid`), the shim registers a fresh userfaultfd, and the handed-over regions are reopened on
 * the memory nodes, so every page reads as it was left; then the process's threads go on. When the
 * process exits, its remote pages are freed.
 */
import { EventEmitter } from 'node:events';
import { SosError, argType } from '../errors.js';
import { integer, object } from '../validate.js';
import {
  connectControl,
  detachArena,
  openArena,
  serveArena,
  type ArenaOptions,
  type ServedArena,
} from './arena-link.js';
import type { FarHandover } from './far-memory.js';
import type { FarStats } from './far-stats.js';

export interface AdoptedProcessEvents {
  nodeLost: [{ node: string; code: string }];
  error: [SosError];
}

/** A process whose arena this monitor serves after a hand-over; `ended` settles when its connection ends. */
export class AdoptedProcess extends EventEmitter<AdoptedProcessEvents> {
  /** The process exited (or was detached again): its final counters, its remote pages freed unless detached. */
  readonly ended: Promise<FarStats>;

  private constructor(
    readonly pid: number,
    private readonly arena: ServedArena,
    ended: Promise<void>,
  ) {
    super();
    this.ended = ended.then(() => this.arena.last ?? this.arena.far.stats());
  }

  get arenaBytes(): number {
    return this.arena.arenaBytes;
  }

  /** The region's live counters. */
  stats(): FarStats {
    return this.arena.last ?? this.arena.far.stats();
  }

  /** Hand the arena over again (detachArena; `writeBackFirst` as there). */
  detach(o: { writeBackFirst?: boolean } = {}): Promise<FarHandover> {
    return detachArena(this.arena, o);
  }

  /** Write back and drop the pages resident now while it runs on: a detach's parked write-back is shorter. */
  writeBackResident(): Promise<void> {
    return this.arena.far.writeBackResident();
  }

  /** @internal */
  static async adopt(pid: number, handover: FarHandover, o: ArenaOptions, control?: string): Promise<AdoptedProcess> {
    const c = await connectControl(pid, control);
    let served: ServedArena | undefined;
    let failure: SosError | undefined;
    let ended!: () => void;
    const endedP = new Promise<void>((resolve) => (ended = resolve));
    const hello = await c.ask('attach');
    if (hello === null || hello.startsWith('err ')) {
      c.sock.end();
      throw new SosError(`process ${pid} cannot be adopted: ${hello?.slice(4) ?? 'its shim hung up'}`, {
        code: 'ERR_ADOPT',
      });
    }
    const box: { adopted?: AdoptedProcess } = {}; // errors before it exists go nowhere
    const helloDone = new Promise<void>((resolve) => {
      serveArena(c.release(), [hello], {
        hello: async (line) => {
          served = await openArena(pid, line, handover.size, o, handover);
          resolve();
          return served;
        },
        refused: (e) => {
          failure = e; // before the wait below ends: its message names why
          resolve();
        },
        error: (e) => box.adopted?.emit('error', e),
        track: () => undefined, // `closed` comes once the region is released
        closed: () => ended(),
      });
    });
    await helloDone;
    if (!served)
      throw new SosError(`process ${pid} cannot be adopted: ${failure?.message}`, {
        code: 'ERR_ADOPT',
        cause: failure,
      });
    const adopted = new AdoptedProcess(pid, served, endedP);
    box.adopted = adopted;
    served.far.on('nodeLost', (n) => adopted.emit('nodeLost', n));
    return adopted;
  }
}

/** Serve the arena of detached process `pid` from `handover`'s regions: see AdoptedProcess. Rejects with ERR_NOT_ATTACHED, ERR_PEER or ERR_ADOPT. */
export function adoptProcess(
  pid: number,
  handover: FarHandover,
  options: ArenaOptions,
  /** The shim's control socket (controlPath() of the process where it was detached), when known. */
  control?: string,
): Promise<AdoptedProcess> {
  integer('pid', pid, 1, 2 ** 22);
  const o = object('options', options) as unknown as ArenaOptions;
  integer('options.localBytes', o.localBytes, 128 * 4096);
  if (!Array.isArray(o.nodes) || o.nodes.length === 0) throw argType('options.nodes must be a non-empty array');
  object('handover', handover);
  if (
    control !== undefined &&
    (typeof control !== 'string' || !/^\0sos-run-shim\/[\w.-]{0,80}\/\d{1,7}$/.test(control))
  )
    throw argType('control must be a shim control socket name (controlPath())');
  return AdoptedProcess.adopt(pid, handover, o, control);
}
