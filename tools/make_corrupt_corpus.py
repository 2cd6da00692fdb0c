#!/usr/bin/env python3
"""Regenerate tests/corrupt/: hand-crafted broken and hostile model directories.

Each case is a directory with config.json and safetensors file(s) derived from one tiny valid
Mixtral-layout model, plus `expected`: the text `submoe inspect` must print (a substring of its
single error line). tests/test_corrupt.sh checks each one: exit status 1, no crash, exactly one
line on stderr containing the expected text. Plain Python 3, no dependencies:

    python3 tools/make_corrupt_corpus.py tests/corrupt
"""
import json
import os
import shutil
import struct
import sys

H, I, E, V, L = 8, 8, 4, 16, 1
CONFIG = {
    "model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "hidden_size": H,
    "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": 2, "num_key_value_heads": 1,
    "num_local_experts": E, "num_experts_per_tok": 2, "vocab_size": V, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def tensors():
    """(name, shape) of the valid model, in file order."""
    hd = H // 2
    out = [("model.embed_tokens.weight", [V, H])]
    for l in range(L):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", [H]), (p + "self_attn.q_proj.weight", [2 * hd, H]),
                (p + "self_attn.k_proj.weight", [hd, H]), (p + "self_attn.v_proj.weight", [hd, H]),
                (p + "self_attn.o_proj.weight", [H, 2 * hd]), (p + "post_attention_layernorm.weight", [H]),
                (p + "block_sparse_moe.gate.weight", [E, H])]
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            out += [(q + "w1.weight", [I, H]), (q + "w3.weight", [I, H]), (q + "w2.weight", [H, I])]
    out += [("model.norm.weight", [H]), ("lm_head.weight", [V, H])]
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def header_and_data(items, dtype="F32"):
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    data = bytearray()
    for i, (name, shape) in enumerate(items):
        nb = numel(shape) * 4
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nb]}
        data += struct.pack(f"<{numel(shape)}f", *[((i * 7 + k) % 13 - 6) / 13.0 for k in range(numel(shape))])
        off += nb
    return hdr, bytes(data)


def pack(hdr_text, data):
    h = hdr_text.encode() if isinstance(hdr_text, str) else hdr_text
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def valid():
    hdr, data = header_and_data(tensors())
    return hdr, data


def write_case(root, name, expected, st_bytes=None, config=None, extra=None, no_st=False):
    d = os.path.join(root, name)
    os.makedirs(d)
    cfg = CONFIG if config is None else config
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=1))
    if not no_st:
        if st_bytes is None:
            hdr, data = valid()
            st_bytes = pack(json.dumps(hdr), data)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(st_bytes)
    for fname, content in (extra or {}).items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
    with open(os.path.join(d, "expected"), "w") as f:
        f.write(expected + "\n")


def main(root):
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    hdr, data = valid()
    good = json.dumps(hdr)
    first = "model.embed_tokens.weight"
    second = "model.layers.0.input_layernorm.weight"

    def mutate(fn):
        h = json.loads(good)
        fn(h)
        return pack(json.dumps(h), data)

    # --- safetensors container
    write_case(root, "st-empty-file", "too short to hold a safetensors header", st_bytes=b"")
    write_case(root, "st-short-file", "too short to hold a safetensors header", st_bytes=b"\x10\x00\x00")
    write_case(root, "st-header-too-large", "exceeds the 100000000-byte limit",
               st_bytes=struct.pack("<Q", 200_000_000) + b"{}")
    write_case(root, "st-header-past-eof", "runs past the end of the",
               st_bytes=struct.pack("<Q", 4096) + b'{"a":1}')
    write_case(root, "st-header-not-json", "header is not a JSON object (it must start with '{')",
               st_bytes=pack("GARBAGE!", b""))
    write_case(root, "st-header-truncated-json", "header JSON is malformed",
               st_bytes=pack(good[: len(good) // 2], data))
    write_case(root, "st-header-array", "header is not a JSON object (it must start with '{')",
               st_bytes=pack("[1, 2, 3]", b""))
    write_case(root, "st-duplicate-key", "duplicate object key",
               st_bytes=pack(good[:-1] + ', "' + first + '": ' + json.dumps(hdr[first]) + "}", data))
    write_case(root, "st-unsupported-dtype", f"tensor '{first}': dtype 'I64' is not supported",
               st_bytes=mutate(lambda h: h[first].update(dtype="I64")))
    write_case(root, "st-span-mismatch", f"tensor '{first}': data_offsets [0, 512] span 512 bytes but shape x dtype needs 256",
               st_bytes=mutate(lambda h: h[first].update(shape=[V // 2, H])))
    write_case(root, "st-shape-overflow", f"tensor '{first}': shape product overflows",
               st_bytes=mutate(lambda h: h[first].update(shape=[2**40, 2**40, 2**40])))
    write_case(root, "st-negative-shape", f"tensor '{first}': shape entries must be non-negative integers",
               st_bytes=mutate(lambda h: h[first].update(shape=[-16, H])))
    write_case(root, "st-offsets-reversed", f"tensor '{first}': data_offsets [512, 0] end before they begin",
               st_bytes=mutate(lambda h: h[first].update(data_offsets=[512, 0])))
    write_case(root, "st-negative-offset", f"tensor '{first}': data_offsets must be non-negative integers",
               st_bytes=mutate(lambda h: h[first].update(data_offsets=[-8, 504])))

    def overlap(h):
        h[second]["data_offsets"] = [480, 480 + 32]
    write_case(root, "st-overlap", f"tensor '{second}': data_offsets [480, 512] overlap the previous tensor '{first}'",
               st_bytes=mutate(overlap))

    def hole(h):
        # Move the first tensor 8 bytes later inside a larger buffer: bytes [0, 8) are a hole.
        for k, v in h.items():
            if k != "__metadata__":
                v["data_offsets"] = [v["data_offsets"][0] + 8, v["data_offsets"][1] + 8]
    write_case(root, "st-hole", "data bytes [0, 8) before it belong to no tensor (a hole)",
               st_bytes=pack(json.dumps((lambda h: (hole(h), h)[1])(json.loads(good))), b"\0" * 8 + data))
    write_case(root, "st-trailing-bytes", "16 bytes after the last tensor belong to no tensor",
               st_bytes=pack(good, data + b"\0" * 16))
    write_case(root, "st-truncated-data", "run past the end of the data",
               st_bytes=pack(good, data[: len(data) - 100]))
    write_case(root, "st-metadata-not-string", "__metadata__ value for 'format' is not a string",
               st_bytes=mutate(lambda h: h["__metadata__"].update(format=3)))
    write_case(root, "st-entry-extra-key", f"tensor '{first}': unexpected key 'checksum' in header entry",
               st_bytes=mutate(lambda h: h[first].update(checksum="abc")))
    write_case(root, "st-missing-dtype", f"tensor '{first}': missing or non-string \"dtype\"",
               st_bytes=mutate(lambda h: h[first].pop("dtype")))

    # --- config.json
    write_case(root, "cfg-malformed", "config.json: malformed JSON at line", config='{"model_type": "mixtral",')
    write_case(root, "cfg-empty", "config.json: file is empty", config="")
    write_case(root, "cfg-not-object", "config.json: top level is not a JSON object", config="[1]")
    write_case(root, "cfg-unknown-arch", "model_type 'llama' is not supported", config=dict(CONFIG, model_type="llama"))
    cfg = dict(CONFIG)
    del cfg["num_local_experts"]
    write_case(root, "cfg-missing-experts", "required key 'num_local_experts' is missing", config=cfg)
    write_case(root, "cfg-topk-too-large", "num_experts_per_tok 9 exceeds num_local_experts 4",
               config=dict(CONFIG, num_experts_per_tok=9))
    write_case(root, "cfg-hidden-string", "key 'hidden_size' must be an integer", config=dict(CONFIG, hidden_size="8"))
    write_case(root, "cfg-huge-layers", "key 'num_hidden_layers' is 1000000000, outside the supported range",
               config=dict(CONFIG, num_hidden_layers=10**9))
    write_case(root, "cfg-heads-mismatch", "num_attention_heads 2 is not a multiple of num_key_value_heads 3",
               config=dict(CONFIG, num_key_value_heads=3))

    # --- model-level consistency
    items = [t for t in tensors() if t[0] != "model.layers.0.block_sparse_moe.experts.3.w2.weight"]
    h2, d2 = header_and_data(items)
    write_case(root, "model-missing-expert",
               "tensor 'model.layers.0.block_sparse_moe.experts.3.w2.weight' is missing (layer 0 expert 3 down)",
               st_bytes=pack(json.dumps(h2), d2))
    items = [(n, [I + 1, H] if n.endswith("experts.1.w3.weight") else s) for n, s in tensors()]
    h2, d2 = header_and_data(items)
    write_case(root, "model-wrong-expert-shape",
               "tensor 'model.layers.0.block_sparse_moe.experts.1.w3.weight' has shape [9, 8], but config.json implies [8, 8]",
               st_bytes=pack(json.dumps(h2), d2))
    write_case(root, "model-no-weights", "no model.safetensors or model.safetensors.index.json", no_st=True)
    idx = {"metadata": {}, "weight_map": {n: "model-00001-of-00002.safetensors" for n, _ in tensors()}}
    idx["weight_map"]["lm_head.weight"] = "model-00002-of-00002.safetensors"
    write_case(root, "index-missing-shard",
               "model.safetensors.index.json: shard 'model-00002-of-00002.safetensors' (holding tensor 'lm_head.weight') does not exist",
               no_st=True, extra={"model.safetensors.index.json": json.dumps(idx),
                                  "model-00001-of-00002.safetensors": pack(good, data)})
    idx = {"weight_map": {n: "model-00001-of-00001.safetensors" for n, _ in tensors()}}
    idx["weight_map"]["model.layers.0.extra.weight"] = "model-00001-of-00001.safetensors"
    write_case(root, "index-tensor-not-in-shard",
               "tensor 'model.layers.0.extra.weight' is mapped to 'model-00001-of-00001.safetensors', which does not contain it",
               no_st=True, extra={"model.safetensors.index.json": json.dumps(idx),
                                  "model-00001-of-00001.safetensors": pack(good, data)})
    idx = {"weight_map": {n: "../../etc/passwd" for n, _ in tensors()}}
    write_case(root, "index-path-escape", "which is not a plain file name in the model directory",
               no_st=True, extra={"model.safetensors.index.json": json.dumps(idx)})
    write_case(root, "index-no-weight-map", "missing or empty \"weight_map\" object",
               no_st=True, extra={"model.safetensors.index.json": '{"metadata": {}}'})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/corrupt")
