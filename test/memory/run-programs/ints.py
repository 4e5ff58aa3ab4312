# An ordinary python3 script for the `sosctl run` tests: a list of millions of
# ints (pymalloc arenas, and the list's own growing array), a bytearray, a dict.
import hashlib, random, sys
n = int(sys.argv[1])
xs = list(range(n))
random.Random(5).shuffle(xs)
total = 0
for i, x in enumerate(xs):
    total = (total * 31 + i * x) % (1 << 61)
blob = bytearray(random.Random(6).randbytes(n * 8))
d = {i: i * i for i in range(0, n, 7)}
print(total, hashlib.sha256(blob).hexdigest(), sum(d.values()) % 1000003)
