# A program for the hand-over tests: 32 MiB of distinct pages in one bytearray (the shim's arena), a
# thread that keeps reading and writing them back unchanged, and commands on stdin.
import hashlib
import os
import socket
import sys
import threading

buf = bytearray(32 << 20)
for off in range(0, len(buf), 4096):
    buf[off : off + 8] = off.to_bytes(8, "little")
spins = 0
held = []


def spin():
    global spins
    while True:
        spins += 1
        off = (spins * 7 * 4096) % len(buf)
        buf[off] = buf[off]


threading.Thread(target=spin, daemon=True).start()


def answer(cmd):
    if cmd[0] == "sum":
        return "sum %s %s" % (hashlib.sha256(buf).hexdigest(), spins > 0)
    if cmd[0] == "uffd":  # hold a userfaultfd of its own: CRIU cannot dump the process then
        import ctypes

        held.append(ctypes.CDLL(None, use_errno=True).syscall(323, 0o2000000))  # SYS_userfaultfd, O_CLOEXEC
        return "uffd %d" % held[-1]
    if cmd[0] == "close-uffd":
        os.close(held.pop())
        return "closed"
    if cmd[0] == "write":  # write <seed>: every page's second word
        seed = int(cmd[1])
        for off in range(0, len(buf), 4096):
            buf[off + 8 : off + 16] = (off ^ seed).to_bytes(8, "little")
        return "written"
    return "unknown"


if len(sys.argv) > 1 and sys.argv[1] == "--tcp":  # one command per connection (a checkpoint takes none open)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    print("ready", server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            cmd = conn.makefile().readline().split()
            if cmd and cmd[0] == "exit":
                break
            if cmd:
                conn.sendall((answer(cmd) + "\n").encode())
else:
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == "exit":
            break
        if cmd:
            print(answer(cmd), flush=True)
