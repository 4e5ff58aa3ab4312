// A wall clock a test can step for the processes it starts: libfaketime (Debian's libfaketime,
// LD_PRELOAD) reads the offset from a file at every call, so writing "+10m" steps
// CLOCK_REALTIME, gettimeofday and time() of every process started with `env` — as an NTP step
// or an operator's `date -s` would — while CLOCK_MONOTONIC stays true (DONT_FAKE_MONOTONIC).
import fs from 'node:fs';
import path from 'node:path';

const LIBS = ['x86_64-linux-gnu', 'aarch64-linux-gnu'].map((a) => `/usr/lib/${a}/faketime/libfaketime.so.1`);

export class SteppableClock {
  readonly env: Record<string, string>;
  private readonly file: string;

  /** `dir` holds the offset file. Throws when libfaketime is not installed (scripts/setup-host.sh installs it). */
  constructor(dir: string) {
    const lib = LIBS.find((l) => fs.existsSync(l));
    if (!lib) throw new Error(`libfaketime not found (${LIBS.join(', ')}): run scripts/setup-host.sh`);
    this.file = path.join(dir, 'faketime-offset');
    fs.writeFileSync(this.file, '+0\n');
    this.env = {
      LD_PRELOAD: lib,
      FAKETIME_TIMESTAMP_FILE: this.file,
      FAKETIME_NO_CACHE: '1',
      DONT_FAKE_MONOTONIC: '1',
    };
  }

  /** Set the offset from the true time, in libfaketime's form ("+10m", "-10m", "+0"). */
  step(offset: string): void {
    fs.writeFileSync(this.file, `${offset}\n`);
  }
}
