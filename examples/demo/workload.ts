/**
 * The demo's workload, an unmodified program: a key-value server (python3) holding MIB MiB of data,
 * each page filled when it starts (so its memory is real), answering a page number with the sum of
 * that page's first 64 bytes, over TCP, one thread per connection.
 * `python3 -c KV_SERVER HOST PORT MIB`; it prints "ready" once it listens.
 */
export const KV_SERVER = `
import os, socket, sys, threading
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = mib << 20
data = bytearray(size)
for off in range(0, size, 1 << 20):
    data[off:off + (1 << 20)] = os.urandom(1 << 20)
pages = size // 4096
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(64)
print("ready", flush=True)
def serve(c):
    f = c.makefile("rb")
    try:
        for line in f:
            o = (int(line) % pages) * 4096
            c.sendall(b"%d\\n" % sum(data[o:o + 64]))
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
