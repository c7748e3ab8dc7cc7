#!/usr/bin/env bash
# Fuzzes the native parsers with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer:
#   scripts/fuzz-native.sh [SECONDS]     (default 60 per target; CI runs 20)
# Builds native/ with clang and PAGEFUSE_FUZZ=ON into build-fuzz/ (the CMake build `npm run test:native` uses
# for ctest; these targets need no Node headers), then runs every fuzz/*_fuzz.cc target for SECONDS, keeping its corpus
# in build-fuzz/corpus/TARGET. Any crash, sanitizer report or leak fails the run and leaves the input as
# build-fuzz/crash-* for replay (build-fuzz/TARGET FILE). Needs Debian's clang and libclang-rt-14-dev.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")/.."
command -v clang++ >/dev/null || { echo "fuzz-native: clang++ is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
xxhash="$(node -p "require('path').join(require('path').dirname(require.resolve('xxhash-addon/package.json')), 'xxHash')")"
[ -f "$xxhash/xxhash.h" ] || { echo "fuzz-native: xxhash.h not found (run npm install first)" >&2; exit 1; }
cmake -S native -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DPAGEFUSE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=$(cd native/fuzz && ls *_fuzz.cc | sed 's/\.cc$//')
cmake --build build-fuzz -j 2 --target $targets >/dev/null
for t in $targets; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "fuzz-native: $t for ${seconds}s"
  (cd build-fuzz && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "./$t" -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 "corpus/$t" 2>"$t.log") || {
    tail -40 "build-fuzz/$t.log" >&2
    echo "fuzz-native: $t failed; see build-fuzz/$t.log" >&2
    exit 1
  }
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "build-fuzz/$t.log" | sed "s/^/  $t /"
done
