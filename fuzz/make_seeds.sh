#!/bin/sh
# Seed corpora for the fuzz harnesses, from the repository's own files: the corrupt-model corpus,
# the demo configs, the plan tests, and small synthetic models, token files and stats files made
# with submoe itself. Usage: fuzz/make_seeds.sh SUBMOE OUTDIR   (run from the source tree)
#
# Re-runnable over fuzz/corpus: the seeds are rewritten, but regression inputs (files named
# crash-* or regress-*, kept from fuzzing) are preserved. The safetensors seeds stay well under
# run.sh's -max_len so that libFuzzer sees them whole. python3 writes the .npy token seeds and
# the activations-only stats seeds; without it they are skipped (with a warning).
set -eu
S=$1
out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/keep"
for h in st config tokens plan index calib resolve; do
    mkdir -p "$tmp/keep/$h"
    for f in "$out/$h"/crash-* "$out/$h"/regress-*; do
        [ -f "$f" ] && cp "$f" "$tmp/keep/$h/"
    done
done
rm -rf "$out"
mkdir -p "$out/st" "$out/config" "$out/tokens" "$out/plan" "$out/index" "$out/calib" "$out/resolve"
for d in tests/corrupt/*/; do
    n=$(basename "$d")
    [ -f "$d/model.safetensors" ] && cp "$d/model.safetensors" "$out/st/$n"
    [ -f "$d/config.json" ] && cp "$d/config.json" "$out/config/$n"
    [ -f "$d/model.safetensors.index.json" ] && cp "$d/model.safetensors.index.json" "$out/index/$n"
done
cp data/demo/config.json "$out/config/demo"
cp data/demo-scratch/config.json "$out/config/demo-scratch"
# Small models of every architecture and stored dtype (each a few KB), one fused expert layout.
tiny="--layers 2 --hidden 8 --intermediate 8 --experts 4 --clusters 2 --heads 2 --kv-heads 1 --vocab 16
      --dense-intermediate 16 --shared-intermediate 8 --shared-experts 1 -q"
for spec in mixtral:f32 qwen2_moe:bf16 qwen3_moe:f16 olmoe:bf16 deepseek:f32 qwen3_moe:f16:fused; do
    a=${spec%%:*} rest=${spec#*:}
    dt=${rest%%:*} layout=per-expert name=$a
    case $rest in *:fused) layout=fused name=$a-fused ;; esac
    # shellcheck disable=SC2086
    "$S" synth --arch "$a" $tiny --dtype "$dt" --layout "$layout" --out "$tmp/$name"
    cp "$tmp/$name/config.json" "$out/config/synth-$name"
    cp "$tmp/$name/model.safetensors" "$out/st/synth-$name"
done
# resolve: a selector byte (fuzz_resolve.c's ten models: architecture v/2, fused if v is odd,
# dtype f32/bf16/f16 by v%3) and that model's config.json
v=0
for a in mixtral qwen2_moe qwen3_moe olmoe deepseek; do
    for layout in per-expert fused; do
        dt=$(echo "f32 bf16 f16" | cut -d' ' -f$((v % 3 + 1)))
        # shellcheck disable=SC2086
        "$S" synth --arch "$a" $tiny --dtype "$dt" --layout "$layout" --out "$tmp/r$v"
        printf "\\$(printf %03o $v)" >"$out/resolve/synth-$a-$layout"
        cat "$tmp/r$v/config.json" >>"$out/resolve/synth-$a-$layout"
        v=$((v + 1))
    done
done
"$S" synth --arch mixtral --layers 2 --hidden 16 --intermediate 32 --experts 4 --clusters 2 --heads 2 --kv-heads 1 \
    --vocab 32 -q --shard-size 20K --out "$tmp/sharded"
cp "$tmp/sharded/model.safetensors.index.json" "$out/index/synth-sharded"
for p in tests/plans/*.yaml; do cp "$p" "$out/plan/$(basename "$p")"; done
# tokens: first byte 0 = raw uint32, 1 = .npy
printf '\000' >"$out/tokens/u32"
head -c 64 data/calib.u32 >>"$out/tokens/u32"
# stats files for the harnesses' fixed model (the same synth options as fuzz_model.h)
"$S" synth --arch mixtral --layers 2 --hidden 16 --intermediate 32 --experts 4 --clusters 2 --heads 2 --kv-heads 1 \
    --vocab 32 -q --out "$tmp/fm"
head -c 4096 data/calib.u32 | od -An -v -tu4 -w4 | awk '{ printf "%c%c%c%c", $1 % 32, 0, 0, 0 }' >"$tmp/t.u32"
"$S" calibrate "$tmp/fm" --tokens "$tmp/t.u32" --samples 4 --seq-len 32 --keep 64 --sample 16 -q -o "$out/calib/stats"
"$S" calibrate "$tmp/fm" --tokens "$tmp/t.u32" --samples 2 --seq-len 16 --keep 12 --heldout 0 --sample 4 -q \
    -o "$out/calib/stats-small-noheldout"
if command -v python3 >/dev/null; then
    python3 - "$out" <<'PY'
import json, struct, sys
out = sys.argv[1]
# .npy token files
for name, descr, fmt in (("npy-i4", "<i4", "<i"), ("npy-i8", "<i8", "<q")):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (8,), }" % descr
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    body = b"".join(struct.pack(fmt, i) for i in range(8))
    open(f"{out}/tokens/{name}", "wb").write(b"\x01" + b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body)

# Activations-only stats files (layers.L.moe_input, as made by other tools) for the fixed model:
# 2 MoE layers, hidden 16. F32, F16, BF16, uneven row counts, a held-out count in the metadata.
def f16(x): return struct.pack("<e", x)
def bf16(x): return struct.pack("<f", x)[2:]
def f32(x): return struct.pack("<f", x)
def st(path, tensors, meta=None, pad=0):
    hdr, data = {}, b""
    for name, (dt, shape, enc) in tensors.items():
        n = 1
        for d in shape: n *= d
        blob = b"".join(enc(((i * 7919) % 97) / 48.0 - 1.0) for i in range(n))
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    if meta: hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode() + b" " * pad
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
enc = {"F32": f32, "F16": f16, "BF16": bf16}
for dt in ("F32", "F16", "BF16"):
    st(f"{out}/calib/acts-{dt.lower()}", {f"layers.{l}.moe_input": (dt, [8, 16], enc[dt]) for l in (0, 1)},
       {"format": "submoe-activations"})
st(f"{out}/calib/acts-uneven-heldout", {"layers.0.moe_input": ("F32", [6, 16], f32),
                                        "layers.1.moe_input": ("BF16", [10, 16], bf16)}, {"heldout": "2"})
st(f"{out}/calib/acts-misaligned", {f"layers.{l}.moe_input": ("F32", [4, 16], f32) for l in (0, 1)}, pad=1)
PY
else
    echo "make_seeds.sh: no python3: .npy token seeds and activations-only stats seeds skipped" >&2
fi
for h in st config tokens plan index calib resolve; do
    cp "$tmp/keep/$h/"* "$out/$h/" 2>/dev/null || true
done
echo "seeds: $(find "$out" -type f | wc -l) files in $out"
