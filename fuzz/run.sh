#!/bin/sh
# make fuzz: build every harness with clang's libFuzzer + ASan + UBSan over the library sources and
# run each for FUZZ_SECONDS (default 60) on a copy of its seed corpus (fuzz/corpus/NAME), jobs niced,
# with a JSON or YAML dictionary (fuzz/dict) where the input is text. FUZZ_ONLY="plan calib" runs
# only those harnesses.
# Crashes are left as BUILD/fuzz/crash-NAME-*; copy one into fuzz/corpus/NAME/ to keep it as a
# regression input (make check replays the corpora).
# Usage: fuzz/run.sh SRCDIR BUILDDIR "CPPFLAGS" "LIBS" SOURCES...
set -eu
src=$1 build=$2 cppflags=$3 libs=$4
shift 4
CC=${FUZZ_CC:-clang}
secs=${FUZZ_SECONDS:-60}
command -v "$CC" >/dev/null || { echo "make fuzz needs clang (apt-get install clang)"; exit 1; }
out="$build/fuzz"
mkdir -p "$out/obj"
flags="-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -std=gnu11 -pthread"
objs=""
for s in "$@"; do
    o="$out/obj/$(echo "$s" | tr / _).o"
    if [ ! -f "$o" ] || [ "$src/$s" -nt "$o" ]; then
        $CC $flags -I"$src/src" -I"$build" $cppflags -c "$src/$s" -o "$o"
    fi
    objs="$objs $o"
done
rm -f "$out/libfuzz.a"
ar rcs "$out/libfuzz.a" $objs  # an archive: each harness links only what it uses
status=0
for h in ${FUZZ_ONLY:-st config index tokens plan calib resolve tokjson tokencode}; do
    bin="$out/fuzz_$h"
    $CC $flags -fsanitize=fuzzer -I"$src/src" -I"$src/fuzz" -I"$build" $cppflags "$src/fuzz/fuzz_$h.c" "$out/libfuzz.a" $libs -o "$bin"
    corpus="$out/corpus-$h"
    mkdir -p "$corpus"
    cp -n "$src/fuzz/corpus/$h/"* "$corpus/" 2>/dev/null || true
    # -max_len: at least 64 KB, and never less than the largest seed (libFuzzer would truncate it)
    maxlen=$(find "$corpus" -type f -exec wc -c {} + | awk '$2 != "total" && $1 > m { m = $1 } END { print (m > 65536 ? m : 65536) }')
    case $h in
    plan) dict="-dict=$src/fuzz/dict/yaml.dict" ;;
    st | config | index | resolve | tokjson) dict="-dict=$src/fuzz/dict/json.dict" ;;
    *) dict="" ;;
    esac
    echo "== fuzz_$h for $secs s (-max_len=$maxlen $dict)"
    # shellcheck disable=SC2086
    if ! (cd "$out" && nice -n 19 "$bin" -max_total_time="$secs" -max_len="$maxlen" $dict -timeout=20 -rss_limit_mb=4096 \
            -artifact_prefix="crash-$h-" -print_final_stats=1 "$corpus" 2>"$out/fuzz_$h.log"); then
        echo "fuzz_$h: FAILED, see $out/fuzz_$h.log and $out/crash-$h-*"
        status=1
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$out/fuzz_$h.log" | tail -3
done
exit $status
