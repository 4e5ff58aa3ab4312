# A program for the hand-over tests: 32 MiB of distinct pages in one bytearray (the shim's arena), a
# thread that keeps reading and writing them back unchanged, and commands on stdin.
import hashlib
import sys
import threading

buf = bytearray(32 << 20)
for off in range(0, len(buf), 4096):
    buf[off : off + 8] = off.to_bytes(8, "little")
spins = 0


def spin():
    global spins
    while True:
        spins += 1
        off = (spins * 7 * 4096) % len(buf)
        buf[off] = buf[off]


threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "sum":
        print("sum", hashlib.sha256(buf).hexdigest(), spins > 0, flush=True)
    elif cmd[0] == "write":  # write <seed>: every page's second word
        seed = int(cmd[1])
        for off in range(0, len(buf), 4096):
            buf[off + 8 : off + 16] = (off ^ seed).to_bytes(8, "little")
        print("written", flush=True)
    elif cmd[0] == "exit":
        break
