#!/usr/bin/python3
"""Make data/demo-task.jsonl, the demo's zero-shot multiple-choice task for `submoe eval --task`,
from the held-out demo text (data/heldout.u32: one byte value per token, never trained on).

Each item is a verse cut at the space nearest its middle: the context is the previous verse, a
newline and the verse's first half; the choices are its true second half and the second halves
of 3 other verses of the held-out text drawn at random, in random order ("gold" is the true
one's index). The target delimiter " " of lm-eval stands for the space at the cut.

Plain Python 3 (no third-party modules); deterministic for a given seed.
Usage: tools/make_demo_task.py [--heldout data/heldout.u32] [--items 200] [--seed 17] > data/demo-task.jsonl
"""

import argparse
import json
import random
import struct
import sys


def verses(path):
    raw = open(path, "rb").read()
    ids = struct.unpack("<%dI" % (len(raw) // 4), raw)
    text = bytes(ids).decode("utf-8")
    lines = text.split("\n")
    return lines[1:-1]  # the first and last may be cut by the token window


def cut(verse):
    """(first half, second half) at the space nearest the middle, or None."""
    mid = len(verse) // 2
    spaces = [i for i, ch in enumerate(verse) if ch == " "]
    if not spaces:
        return None
    k = min(spaces, key=lambda i: (abs(i - mid), i))
    first, rest = verse[:k], verse[k + 1:]
    return (first, rest) if len(first) >= 12 and len(rest) >= 12 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", default="data/heldout.u32")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    vs = verses(a.heldout)
    cuts = [(i, cut(v)) for i, v in enumerate(vs) if i > 0 and 40 <= len(v) <= 160]
    cuts = [(i, c) for i, c in cuts if c]
    rng = random.Random(a.seed)
    picked = sorted(rng.sample(range(len(cuts)), a.items))
    for p in picked:
        i, (first, rest) = cuts[p]
        others = set()
        while len(others) < a.choices - 1:
            q = rng.randrange(len(cuts))
            if q != p and cuts[q][1][1] != rest:
                others.add(cuts[q][1][1])
        choices = [rest] + sorted(others)
        rng.shuffle(choices)
        item = {"context": first, "choices": choices, "gold": choices.index(rest)}
        sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
