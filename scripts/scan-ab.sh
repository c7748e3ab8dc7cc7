#!/usr/bin/env bash
# Compares the scan's speed between two checkouts (e.g. main and a branch's worktree) in one process:
#   scripts/scan-ab.sh A_DIR B_DIR [MIB] [ROUNDS]      (defaults 2048 MiB, 10 rounds)
# Builds each checkout's native/core in a namespace of its own with scripts/scan-ab.cc, then runs exact
# scans (default options) of MIB of distinct pages at one thread and at the default thread count, A and B
# alternated round by round, each against the same round's best native read. Prints the medians and the
# median of the paired B/A ratios (> 1: B is faster). The builds run niced, the scans not. PAGEFUSE_HASH_KERNELS picks A's kernel set,
# PAGEFUSE_HASH_KERNELS_B B's. On a shared machine, run it when nothing else is timed (docs/scan.md, Speed:
# two copies of the same code paired 0.89-1.05 here). At two threads, confirm a gain in the bench's own
# path (src/bench/hashing.ts): the ninth session's index in parts paired 1.05 here and lost 14-24 % there.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/scan-ab.sh A_DIR B_DIR [MIB] [ROUNDS]" >&2; exit 2; }
here="$(cd "$(dirname "$0")/.." && pwd)"
a="$(cd "$1" && pwd)"; b="$(cd "$2" && pwd)"
for d in "$a" "$b"; do [ -d "$d/native/core" ] || { echo "scan-ab: $d has no native/core" >&2; exit 2; }; done
xxhash="$(cd "$here" && node scripts/xxhash-include.cjs)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
flags=(-O3 -std=c++17 -I"$xxhash")
for side in A B; do
  if [ $side = A ]; then root="$a"; else root="$b"; fi
  mkdir -p "$work/$side"
  for f in "$root"/native/core/*.cc; do
    nice -n 10 g++ "${flags[@]}" -Dpagefuse=pagefuse_ab_$side -I"$root/native" -c "$f" -o "$work/$side/$(basename "$f" .cc).o"
  done
  nice -n 10 g++ "${flags[@]}" -Dpagefuse=pagefuse_ab_$side -DSCAN_AB_SIDE=$side -I"$root/native" -c "$here/scripts/scan-ab.cc" -o "$work/$side/entry.o"
done
nice -n 10 g++ "${flags[@]}" "$here/scripts/scan-ab.cc" "$work"/A/*.o "$work"/B/*.o -o "$work/scan-ab" -ldl -lpthread
"$work/scan-ab" "${3:-2048}" "${4:-10}"
