#!/usr/bin/python3
"""make_tokens.py CORPUS OUTDIR — byte-level token files for the demo models.

Vocabulary: 256 byte values (token = byte).  Token files are raw little-endian uint32.
Split (deterministic): the held-out part is the last 5% of the corpus by bytes, moved
forward to the next verse (line) start; training uses everything before it.
  calib.u32   : 64 chunks x 2048 tokens = 131072 tokens from the training part
  heldout.u32 : 32 chunks x 2048 tokens =  65536 tokens from the held-out part
Chunks are evenly spaced over their part and each starts at a verse start, so every
2048-token chunk (and every aligned 256-token window in it) is contiguous text.
"""

import os
import sys

import numpy as np

HELDOUT_FRACTION = 0.05
CHUNK = 2048
CALIB_CHUNKS = 64
HELDOUT_CHUNKS = 32


def split_corpus(data):
    """bytes -> (train bytes, held-out bytes)."""
    cut = int(len(data) * (1.0 - HELDOUT_FRACTION))
    nl = data.find(b"\n", cut)
    cut = nl + 1
    return data[:cut], data[cut:]


def chunks(part, n, size):
    """n chunks of `size` bytes, evenly spaced over `part`, each starting at a line start."""
    out = []
    span = len(part) - size
    prev_end = 0
    for i in range(n):
        pos = (span * i) // n
        if pos > 0:
            pos = part.find(b"\n", pos - 1) + 1     # first line start >= pos
        pos = max(pos, prev_end)
        if pos + size > len(part):
            raise ValueError("part too small for %d chunks of %d" % (n, size))
        out.append(part[pos:pos + size])
        prev_end = pos + size
    return b"".join(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_tokens.py CORPUS OUTDIR")
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    train, held = split_corpus(data)
    os.makedirs(sys.argv[2], exist_ok=True)
    for name, part, n in (("calib.u32", train, CALIB_CHUNKS),
                          ("heldout.u32", held, HELDOUT_CHUNKS)):
        toks = np.frombuffer(chunks(part, n, CHUNK), dtype=np.uint8).astype("<u4")
        path = os.path.join(sys.argv[2], name)
        toks.tofile(path + ".tmp")
        os.replace(path + ".tmp", path)
        print("%s: %d tokens" % (path, len(toks)))
    print("corpus %d bytes: train %d, held-out %d (starts: %r)"
          % (len(data), len(train), len(held), held[:60]))


if __name__ == "__main__":
    main()
