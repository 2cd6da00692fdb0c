#!/usr/bin/python3
"""Make data/demo-task.jsonl, the demo's zero-shot multiple-choice task for `submoe eval --task`,
from the held-out demo text (data/heldout.u32: one byte value per token, never trained on).

Each item is a held-out verse whose last word has at least 4 letters: the context is the verse up
to that word (at least 30 characters, without the space before it: lm-eval's target delimiter " "
stands for it); the choices are the word (without the punctuation after it) and the last words
of 3 other verses of the held-out text drawn at random, in random order; "gold" is the true
one's index. (Cutting verses in the middle and offering whole second halves was tried first:
the demo model scored at chance, 0.285 with 4 choices, since a half-verse's own likelihood
swamps its fit to the context.)

Plain Python 3 (no third-party modules); deterministic for a given seed.
Usage: tools/make_demo_task.py [--heldout data/heldout.u32] [--items 200] [--seed 17] > data/demo-task.jsonl
"""

import argparse
import json
import random
import re
import struct
import sys


def verses(path):
    raw = open(path, "rb").read()
    ids = struct.unpack("<%dI" % (len(raw) // 4), raw)
    lines = bytes(ids).decode("utf-8").split("\n")
    return lines[1:-1]  # the first and last may be cut by the token window


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", default="data/heldout.u32")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args()
    cands = []
    for v in verses(a.heldout):
        m = re.match(r"^(.*\S) ([A-Za-z]{4,})[.;:,?!]*$", v)
        if m and len(m.group(1)) >= 30:
            cands.append((m.group(1), m.group(2)))
    words = sorted({w for _, w in cands})
    rng = random.Random(a.seed)
    for p in sorted(rng.sample(range(len(cands)), a.items)):
        context, word = cands[p]
        choices = [word] + rng.sample([w for w in words if w != word], a.choices - 1)
        rng.shuffle(choices)
        item = {"context": context, "choices": choices, "gold": choices.index(word)}
        sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
