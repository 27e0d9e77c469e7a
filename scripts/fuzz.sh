#!/usr/bin/env bash
# scripts/fuzz.sh - a bounded libFuzzer run of the heaptap command's profile
# reader (tests/fuzz/fuzz_prof.c: tools/cli/prof.c and pbread.c under
# AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer). Part of the
# soak tier (scripts/soak.sh); not part of CI.
#
# Configures $FUZZ_BUILD_DIR (default build-fuzz/) with clang and -DHT_FUZZ=ON,
# builds fuzz_prof, replays tests/fuzz/regressions/, makes the seed corpus
# from real profiles (tests/fuzz/make_seeds.sh, with libheaptap.so and the
# examples of $SEED_BUILD_DIR, default build/, built there when missing) and
# fuzzes for $FUZZ_TIME seconds (default 120). The corpus it grows stays in
# $FUZZ_BUILD_DIR/fuzz-out/corpus for the next run. Any crash, leak, sanitizer
# report, timeout (5 s) or out-of-memory (2 GiB) fails the run, and the input
# is left in $FUZZ_BUILD_DIR/fuzz-out/artifacts/: minimize it (fuzz_prof
# -minimize_crash=1 -runs=10000 FILE), fix, and add it to tests/fuzz/regressions/
# and to tests/unit/test_cli_prof.c. Extra arguments go to libFuzzer.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
SEED_BUILD_DIR=${SEED_BUILD_DIR:-build}
FUZZ_TIME=${FUZZ_TIME:-120}
CLANG=${CLANG:-clang}

HEAPTAP_PACKAGES+=(clang)
ht_install_deps
# libFuzzer's runtime is only recommended by Debian's clang (Debian 12:
# libclang-rt-14-dev), and the dependencies are installed without those.
if command -v dpkg-query >/dev/null 2>&1; then
	HEAPTAP_PACKAGES=("libclang-rt-$("$CLANG" -dumpversion | cut -d. -f1)-dev")
	ht_install_deps
fi

cmake -S . -B "$FUZZ_BUILD_DIR" -DCMAKE_C_COMPILER="$CLANG" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DHT_FUZZ=ON
cmake --build "$FUZZ_BUILD_DIR" --target fuzz_prof -j2
fuzzer=$FUZZ_BUILD_DIR/tests/fuzz/fuzz_prof

echo "fuzz: replaying tests/fuzz/regressions/"
"$fuzzer" tests/fuzz/regressions/* >"$FUZZ_BUILD_DIR/fuzz-regressions.log" 2>&1 || {
	cat "$FUZZ_BUILD_DIR/fuzz-regressions.log" >&2
	echo "fuzz: FAILED on a regression input" >&2
	exit 1
}

if [ ! -e "$SEED_BUILD_DIR/libheaptap.so" ] || [ ! -e "$SEED_BUILD_DIR/examples/leaky_server" ] ||
	[ ! -e "$SEED_BUILD_DIR/examples/thread_leak" ]; then
	cmake -S . -B "$SEED_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build "$SEED_BUILD_DIR" --target heaptap leaky_server thread_leak -j2
fi
out=$FUZZ_BUILD_DIR/fuzz-out
rm -rf "$out/seeds" "$out/artifacts"
mkdir -p "$out/corpus" "$out/artifacts"
tests/fuzz/make_seeds.sh "$SEED_BUILD_DIR/libheaptap.so" "$SEED_BUILD_DIR/examples" "$out/seeds"

echo "fuzz: fuzz_prof for ${FUZZ_TIME}s (log: $out/fuzz.log)"
rc=0
"$fuzzer" -max_total_time="$FUZZ_TIME" -rss_limit_mb=2048 -timeout=5 -print_final_stats=1 \
	-artifact_prefix="$out/artifacts/" "$@" "$out/corpus" "$out/seeds" >"$out/fuzz.log" 2>&1 ||
	rc=$?
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
	"$out/fuzz.log" || true
if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$out/artifacts")" ]; then
	tail -n 60 "$out/fuzz.log" >&2
	echo "fuzz: FAILED (libFuzzer exit $rc); inputs in $out/artifacts/:" >&2
	ls -l "$out/artifacts" >&2
	exit 1
fi
echo "fuzz: passed"
