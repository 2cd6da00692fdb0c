#!/bin/sh
# Outputs that land on inputs (issue 14 §4): every command that writes refuses, before any work,
# an output that is, lies inside or contains one of its inputs (model files, tokens, stats, the
# plan) or another of its outputs — through symbolic links (a Hugging Face cache's snapshot links
# into ../blobs), hard links, ".." paths — with one message, exit 1, and nothing written.
set -u
. "$SRCDIR/tests/lib.sh"
scratch outputs
S=$SUBMOE
T="timeout 120"
cd "$tmp" || exit 1
C="$SRCDIR/data/calib.u32"
show_failure() { sed 's/^/    | /' err; }
# refused NAME PATTERN -- COMMAND...: exit 1, one line on stderr matching PATTERN, nothing on stdout
refused() {
    name=$1 pat=$2
    shift 3
    $T "$@" >out 2>err
    st=$?
    if [ $st -eq 1 ] && [ "$(wc -l <err)" -eq 1 ] && grep -qE -- "$pat" err && [ ! -s out ]; then ok "$name"; else
        echo "    exit $st"; bad "$name"; fi
}
sums() { cat m/* | cksum; }

$T "$S" synth --arch mixtral --out m -q
$T "$S" calibrate m --tokens "$C" --samples 8 --seq-len 64 -o m.stats -q
$T "$S" plan m --experts 4 -c m.stats -o p.yaml -q
head -c 65536 "$C" >t.u32
before=$(sums)
plan_sum=$(cksum <p.yaml)
stats_sum=$(cksum <m.stats)

# The issue's two examples.
refused "calibrate -o m/model.safetensors: refused (the model's weights)" \
    "m/model.safetensors: the output would replace the source model file m/model.safetensors, which is never modified" \
    -- "$S" calibrate m --tokens "$C" -o m/model.safetensors -q
refused "plan -o m/config.json: refused (the model's config)" \
    "m/config.json: the output would replace the source model file m/config.json" \
    -- "$S" plan m --experts 4 -c m.stats -o m/config.json -q
if [ "$(sums)" = "$before" ] && $T "$S" inspect m >/dev/null 2>err; then ok "... the model is unchanged and opens"; else
    bad "the model changed"; fi

# Through a symbolic link, a hard link, "..".
ln -s m/config.json link.json
refused "plan -o a symbolic link to m/config.json: refused" "link.json: the output would replace the source model file" \
    -- "$S" plan m --experts 4 -c m.stats -o link.json -q
ln m/model.safetensors hard.st
refused "calibrate -o a hard link to m/model.safetensors: refused (same device and inode)" \
    "hard.st: the output would replace the source model file" -- "$S" calibrate m --tokens t.u32 -o hard.st -q
mkdir sub
refused "plan -o sub/../m/config.json: refused" "the output would replace the source model file" \
    -- "$S" plan m --experts 4 -c m.stats -o sub/../m/config.json -q
refused "plan -o nosuch/../m/config.json: refused" "the output would replace the source model file" \
    -- "$S" plan m --experts 4 -c m.stats -o nosuch/../m/config.json -q

# Stats outputs inside the model; the stats file both read (-c) and written (-o); the tokens.
refused "calibrate -o m/x.stats: refused (inside the model directory)" \
    "m/x.stats: the output would be written inside the source model m" -- "$S" calibrate m --tokens t.u32 -o m/x.stats -q
refused "plan's stats cache inside the model: refused" "the output would be written inside the source model" \
    -- "$S" plan m --experts 4 -t t.u32 --samples 4 --seq-len 64 -c m/x.stats -o p2.yaml -q
refused "plan -c m.stats -o m.stats: refused (its stats input)" "m.stats: the output would replace the stats file" \
    -- "$S" plan m --experts 4 -c m.stats -o m.stats -q
refused "plan -t T -c s -o s: refused (two outputs, one file)" "s.stats: the output would replace the .* another output of this command" \
    -- "$S" plan m --experts 4 -t t.u32 --samples 4 --seq-len 64 -c s.stats -o s.stats -q
refused "calibrate -o its tokens file: refused" "t.u32: the output would replace the tokens file" \
    -- "$S" calibrate m --tokens t.u32 -o t.u32 -q
if [ "$(cksum <m.stats)" = "$stats_sum" ] && [ ! -e m/x.stats ] && [ ! -e s.stats ] && [ ! -e p2.yaml ] &&
    [ "$(cksum <t.u32)" = "$(head -c 65536 "$C" | cksum)" ]; then ok "... the stats and tokens are unchanged, nothing written"
else bad "a refused command wrote something"; fi

# apply: the output directory is the model, inside it, around it (--force), the plan itself.
refused "apply -o m --force: refused (the model directory)" "the output would replace the source model" \
    -- "$S" apply p.yaml -o m --force -q
refused "apply -o m/out: refused (inside the model)" "the output would be written inside the source model" \
    -- "$S" apply p.yaml -o m/out -q
refused "apply -o . --force: refused (the model's parent)" "the output would contain the source model" \
    -- "$S" apply p.yaml -o . --force -q
refused "apply -o p.yaml --force: refused (the plan itself)" "p.yaml: the output would replace the plan p.yaml" \
    -- "$S" apply p.yaml -o p.yaml --force -q
mkdir keep && cp p.yaml keep/p.yaml
refused "apply keep/p.yaml -o keep --force: refused (the directory holding the plan)" "the output would contain the plan" \
    -- "$S" apply keep/p.yaml -o keep --force -q
if [ "$(sums)" = "$before" ] && [ "$(cksum <p.yaml)" = "$plan_sum" ] && [ -f keep/p.yaml ] && [ ! -e m/out ]; then
    ok "... the model and the plans are unchanged"; else bad "apply changed an input"; fi

# A Hugging Face cache: snapshot files are links into ../../blobs; the blobs are the model.
mkdir -p hf/blobs hf/snapshots/r1
cp m/config.json hf/blobs/aaa && cp m/model.safetensors hf/blobs/bbb
ln -s ../../blobs/aaa hf/snapshots/r1/config.json && ln -s ../../blobs/bbb hf/snapshots/r1/model.safetensors
hf_sum=$(cat hf/blobs/* | cksum)
refused "calibrate -o the blob behind a snapshot's weights: refused" "hf/blobs/bbb: the output would replace the source model file" \
    -- "$S" calibrate hf/snapshots/r1 --tokens t.u32 -o hf/blobs/bbb -q
$T "$S" plan hf/snapshots/r1 --experts 4 -c m.stats -o hf.yaml -q 2>err
st=$?
if [ $st -eq 0 ]; then ok "a plan of the cached snapshot (inputs only in the cache) is written"; else bad "plan of a snapshot: exit $st"; fi
refused "apply -o hf/blobs --force: refused (holds the snapshot's real files)" "hf/blobs: the output would contain the source model file" \
    -- "$S" apply hf.yaml -o hf/blobs --force -q
if [ "$(cat hf/blobs/* | cksum)" = "$hf_sum" ]; then ok "... the blobs are unchanged"; else bad "a blob changed"; fi

# synth and the legitimate cases still work: outputs next to the inputs.
$T "$S" calibrate m --tokens t.u32 --samples 4 --seq-len 64 -o t.stats -q 2>err && $T "$S" apply p.yaml -o merged -q 2>>err &&
    $T "$S" synth --arch mixtral --out m2 -q 2>>err
st=$?
if [ $st -eq 0 ] && [ ! -s err ] && [ -d merged ] && [ -d m2 ]; then ok "outputs beside the inputs: written, nothing said"; else
    bad "outputs beside the inputs: exit $st"; fi
echo "$n checks, $fail failed"
[ "$fail" -eq 0 ]
