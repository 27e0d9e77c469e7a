#!/usr/bin/env bash
# scripts/soak.sh - the soak tier of heaptap's reliability tests (issue 5).
#
# The same drivers as the quick tier in tests/reliability/, run with --soak:
# about ten times the iterations (fork, exec, signal storms, thread exits,
# dlopen/dlclose storms, exit paths, resources, 200k-thread churn). Builds
# into $BUILD_DIR (default build-soak/) with -DHEAPTAP_SOAK=ON and runs the
# tests labelled "soak", one at a time. Then scripts/fuzz.sh: the heaptap
# command's profile reader under libFuzzer and the sanitizers for
# $FUZZ_TIME seconds (default 120; 0 skips it), seeded with profiles from
# this build. About 27 minutes on 2 cores with FUZZ_TIME=0 (exit 10, signals
# 6, fork 5); not part of CI. Extra arguments go to ctest, e.g.
# FUZZ_TIME=0 ./scripts/soak.sh -R fork
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

BUILD_DIR=${BUILD_DIR:-build-soak}
ht_install_deps
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEAPTAP_SOAK=ON
cmake --build "$BUILD_DIR" -j2
rc=0
(cd "$BUILD_DIR" && ctest --output-on-failure -L soak "$@") || rc=1
if [ "${FUZZ_TIME:-120}" != 0 ]; then
	SEED_BUILD_DIR=$BUILD_DIR FUZZ_TIME=${FUZZ_TIME:-120} scripts/fuzz.sh || rc=1
fi
exit "$rc"
