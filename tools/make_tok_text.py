#!/usr/bin/env python3
"""make_tok_text.py KJV.u32 OUT -- the tokenizer parity text (issue 17), deterministic.

Writes >= 200 KB of bytes mixing: English prose (the King James Version, public domain, read from
a bundled one-byte-per-token file such as data/heldout.u32), generated code, text composed from
Unicode ranges (CJK, kana, Hangul, Arabic, Devanagari, Greek with final sigma, Cyrillic, Turkish
dotted I, combining marks in both composed and decomposed form, full-width and compatibility
characters), emoji with ZWJ sequences and skin tones, whitespace runs (spaces, tabs, newlines,
no-break and ideographic spaces), digit runs, special-token strings inside text, and invalid UTF-8
(lone continuation bytes, truncated sequences, overlong forms, surrogates, bytes F5-FF).
No third-party text: everything but the KJV is generated here from a fixed seed.
"""
import random
import struct
import sys

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<|startoftext|>",
            "<|return|>", "<mask>", "<｜begin▁of▁sentence｜>", "<|padding|>", "[CLS]", "[SEP]", "<|im_start"]

RANGES = {
    "cjk": (0x4E00, 0x9FA5), "hiragana": (0x3041, 0x3096), "katakana": (0x30A1, 0x30FA),
    "hangul": (0xAC00, 0xD7A3), "arabic": (0x0621, 0x064A), "devanagari": (0x0905, 0x0939),
    "greek": (0x03B1, 0x03C9), "cyrillic": (0x0430, 0x044F), "latin1": (0x00C0, 0x00FF),
    "thai": (0x0E01, 0x0E2E), "hebrew": (0x05D0, 0x05EA),
}
EMOJI = ["\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466", "\U0001F44D\U0001F3FD",
         "\U0001F3F3\uFE0F\u200D\U0001F308", "\u2764\uFE0F", "\U0001F1FA\U0001F1F8", "\U0001F600",
         "\U0001F9D1\u200D\U0001F4BB", "\U0001F469\U0001F3FE\u200D\U0001F52C", "\u263A", "\U0001F525"]
ODD = ["e\u0301", "\u00E9", "A\u030A", "\u212B", "\uFB01", "\uFF21\uFF22\uFF23", "\u2460", "\u00BD",
       "\u0130stanbul", "\u03A3\u039F\u03A6\u039F\u03A3", "\u1E9B\u0323", "\u3000", "\u00A0", "\u2028",
       "\u0915\u094D\u0937", "\u0644\u0627", "\u00DF", "\u0149", "\u1F88", "\uFDFA", "x\u0308\u0301"]
BAD = [b"\x80", b"\xbf\x80", b"\xc3", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xe0\x80\xaf",
       b"\xed\xa0\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe\xfe", b"\xf4\x90\x80\x80", b"\xe2\x28\xa1"]
WS = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "        ", "\u00A0", "\u3000", " \t \n"]
KEYWORDS = ["def", "return", "if", "else", "for", "while", "int", "struct", "static", "const", "void",
            "import", "class", "self", "None", "true", "false", "NULL", "fn", "let", "mut"]


def word(rng, name):
    lo, hi = RANGES[name]
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 7)))


def ident(rng):
    parts = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 8)))
             for _ in range(rng.randint(1, 3))]
    return rng.choice(["_", ""]).join(parts) if rng.random() < 0.7 else "".join(p.capitalize() for p in parts)


def code_block(rng):
    out = []
    for _ in range(rng.randint(3, 12)):
        ind = "    " * rng.randint(0, 3) if rng.random() < 0.8 else "\t" * rng.randint(1, 2)
        kind = rng.random()
        if kind < 0.3:
            out.append(f"{ind}{rng.choice(KEYWORDS)} {ident(rng)}({ident(rng)}, {rng.randint(0, 99999)}) {{")
        elif kind < 0.6:
            out.append(f"{ind}{ident(rng)}->{ident(rng)}[{rng.randint(0, 255)}] += 0x{rng.randint(0, 1 << 32):08x}; // {ident(rng)}")
        elif kind < 0.8:
            out.append(f"{ind}{ident(rng)} = \"{ident(rng)}\\n\" if {ident(rng)} != '{ident(rng)}' else {rng.random():.6f}")
        else:
            out.append(f"{ind}#include <{ident(rng)}.h>  /* {ident(rng)} */   ")
    return "\n".join(out) + "\n"


def multilingual(rng):
    parts = []
    for _ in range(rng.randint(5, 25)):
        r = rng.random()
        if r < 0.55:
            parts.append(word(rng, rng.choice(list(RANGES))))
        elif r < 0.7:
            parts.append(rng.choice(EMOJI) * rng.randint(1, 3))
        elif r < 0.85:
            parts.append(rng.choice(ODD))
        else:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        parts.append(rng.choice([" ", " ", " ", "", "\u3001", "\u060C ", ", ", "\u0964 ", "\u3002"]))
    return "".join(parts)


def main():
    src, out = sys.argv[1], sys.argv[2]
    data = open(src, "rb").read()
    kjv = bytes(struct.unpack("<%dI" % (len(data) // 4), data)).decode("ascii")
    lines = kjv.split("\n")
    rng = random.Random(17)
    chunks = []
    size = 0
    pos = 0
    while size < 210_000:
        r = rng.random()
        if r < 0.35:
            n = rng.randint(1, 6)
            s = "\n".join(lines[pos:pos + n]) + "\n"
            pos = (pos + n) % (len(lines) - 10)
            if rng.random() < 0.3:
                s = s.upper() if rng.random() < 0.5 else s.replace(" ", rng.choice(WS))
        elif r < 0.55:
            s = code_block(rng)
        elif r < 0.75:
            s = multilingual(rng) + rng.choice(WS)
        elif r < 0.83:
            s = rng.choice(WS) * rng.randint(1, 40) + str(rng.randint(0, 10 ** 15)) * rng.randint(1, 3)
        elif r < 0.93:
            s = (rng.choice(SPECIALS) + rng.choice(["", " ", "  ", "x", "\n"]) + lines[rng.randrange(len(lines))][:40]
                 + rng.choice(["", " "]) + rng.choice(SPECIALS))
        else:
            s = None
        if s is None:
            b = rng.choice(BAD) + lines[rng.randrange(len(lines))][:30].encode() + rng.choice(BAD)
        else:
            b = s.encode("utf-8")
        chunks.append(b)
        size += len(b)
    with open(out, "wb") as f:
        f.write(b"".join(chunks))


if __name__ == "__main__":
    main()
