#!/usr/bin/env python3
"""make_demo_tokenizer.py OUT.json -- the tokenizer.json of the bundled demo models (issue 17).

The demo models read one byte per token: id b is byte b (data/README). In tokenizer.json terms that
is a byte-level BPE with no merges: the ByteLevel pre-tokenizer (no prefix space, no regex) maps each
byte to GPT-2's printable stand-in character, and the vocabulary maps that character to the byte's
value. The ByteLevel decoder maps back. Plain Python, no dependencies; the output is deterministic.
"""
import json
import sys


def byte_chars():
    """GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest for 256 + n."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def main():
    chars = byte_chars()
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": level,
        "post_processor": None,
        "decoder": level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {chars[b]: b for b in range(256)}, "merges": []},
    }
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
