#!/usr/bin/env bash
# Build and run one libFuzzer target over C++ code that parses what peers send:
# test/fuzz/native/NAME.cc, compiled with clang-14 -fsanitize=fuzzer,address,undefined
# together with the project sources its "// fuzz-sources:" line names (they
# must not need Node: parsers are kept free of N-API and crypto for this).
#
#   scripts/fuzz-native.sh NAME [libFuzzer flags...]      e.g. -runs=200000, -max_total_time=60
#
# The kept corpus test/fuzz/corpus/native-NAME/ is replayed first (read only);
# new inputs go to .cache/fuzz/native-NAME/ and findings to
# ${TMPDIR:-/tmp}/sos-fuzz-findings/. Exit status: libFuzzer's (0: nothing found).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/fuzz-native.sh NAME [libFuzzer flags...]}
shift
src=test/fuzz/native/$name.cc
[ -f "$src" ] || { echo "fuzz-native: no target $src" >&2; exit 2; }
command -v clang++-14 >/dev/null || { echo "fuzz-native: clang++-14 is missing (scripts/setup-host.sh installs it)" >&2; exit 2; }
read -r -a extra < <(sed -n 's#^// fuzz-sources:##p' "$src" | head -n1)
bin=build/fuzz/$name
mkdir -p build/fuzz ".cache/fuzz/native-$name" "${TMPDIR:-/tmp}/sos-fuzz-findings"
newest=$(ls -t "$src" "${extra[@]}" native/memory/*.h 2>/dev/null | head -n1)
if [ ! -x "$bin" ] || [ "$newest" -nt "$bin" ]; then
  clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Inative -o "$bin" "$src" "${extra[@]}"
fi
seeds=test/fuzz/corpus/native-$name
# SOS_FUZZ_FRESH=1 (the suite): new inputs go to a scratch folder, so a run
# replays only the kept corpus and is the same on every machine.
grown=.cache/fuzz/native-$name
if [ "${SOS_FUZZ_FRESH:-}" = 1 ]; then
  grown=$(mktemp -d)
  trap 'rm -rf "$grown"' EXIT
fi
dirs=("$grown")
[ -d "$seeds" ] && dirs+=("$seeds")
"$bin" -artifact_prefix="${TMPDIR:-/tmp}/sos-fuzz-findings/$name-" -print_final_stats=1 "$@" "${dirs[@]}"
