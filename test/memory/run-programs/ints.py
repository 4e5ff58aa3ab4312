# An ordinary python3 script for the `sosctl run` tests: a list of millions of
# ints (pymalloc arenas, and the list's own growing array), a bytearray, a dict.
# Mostly sequential passes, some random lookups: a paged run must print what a
# plain run prints.
import hashlib, random, sys
n = int(sys.argv[1])
xs = [(i * 2654435761) % 4294967291 for i in range(n)]
total = 0
for i, x in enumerate(xs):
    total = (total * 31 + i * x) % (1 << 61)
r = random.Random(5)
picks = sum(xs[r.randrange(n)] for _ in range(20000))
blob = bytearray(random.Random(6).randbytes(n * 8))
d = {i: i * i for i in range(0, n, 7)}
print(total, picks, hashlib.sha256(blob).hexdigest(), sum(d.values()) % 1000003)
