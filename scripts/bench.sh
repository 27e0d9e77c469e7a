#!/usr/bin/env bash
# scripts/bench.sh - run heaptap's benchmark suite and write bench/RESULTS.md.
#
#   scripts/bench.sh            full suite (~6 min on 2 cores)
#   scripts/bench.sh --quick    shorter windows, 3 repetitions (~2 min)
#   (other arguments go to bench/run.py: --reps N, --only malloc,redis, --out FILE)
#
# Installs the comparison tools it needs (Debian 12) when they are missing,
# builds heaptap and the benchmarks (RelWithDebInfo) in $HEAPTAP_BENCH_BUILD
# (default /tmp/heaptap-bench-build), and runs bench/run.py. Everything runs
# locally: redis listens on a unix socket in a temporary directory only.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${HEAPTAP_BENCH_BUILD:-/tmp/heaptap-bench-build}"

# shellcheck source=scripts/deps.sh
. "$root/scripts/deps.sh"
ht_install_deps

bench_pkgs=(heaptrack libjemalloc2 libjemalloc-dev google-perftools libgoogle-perftools-dev
	redis-server redis-tools sqlite3 valgrind time make)
missing=()
for p in "${bench_pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	sudo=()
	[ "$(id -u)" -ne 0 ] && sudo=(sudo)
	echo "bench.sh: installing ${missing[*]}" >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		"${missing[@]}" || {
		"${sudo[@]}" apt-get update &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
				--no-install-recommends "${missing[@]}"
	}
fi
# The Debian package starts a redis service; the suite starts its own servers.

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target heaptap bench
exec python3 "$root/bench/run.py" --build "$build" "$@"
