#!/usr/bin/env bash
# scripts/demo.sh - the heaptap story in one command.
#
#  1. A service's memory rises under load and stays after the load stops:
#     examples/leaky_server runs under LD_PRELOAD=libheaptap.so, we send it
#     SIGUSR2 once it is idle, and print the sites holding the memory. The
#     leaking function, remember_session(), must be on top.
#  2. A service leaks threads: examples/thread_leak runs under heaptap and we
#     print its thread profile: live threads by the stack that created them.
#
# On a fresh Debian 12 machine (as root, or with sudo) this installs what is
# missing, configures and builds into $BUILD_DIR (default build/) first.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

BUILD_DIR=${BUILD_DIR:-build}
ht_install_deps
ht_build "$BUILD_DIR" >/dev/null

lib=$(cd "$BUILD_DIR" && pwd -P)/libheaptap.so
examples=$(cd "$BUILD_DIR/examples" && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/heaptap-demo.XXXXXX")
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# go tool pprof needs a writable HOME and cache; keep them out of the user's.
export GOCACHE="$work/go-cache" GOPATH="$work/go-path" PPROF_TMPDIR="$work"

# wait_for FILE SECONDS
wait_for() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	echo "demo: $1 did not appear within $2 s" >&2
	return 1
}

# top FILE [SAMPLE_INDEX]: the top sites, by go tool pprof or the fallback.
top() {
	if command -v go >/dev/null 2>&1; then
		HOME="$work" go tool pprof -top -nodecount=8 ${2:+-sample_index="$2"} "$1" 2>/dev/null
	else
		python3 scripts/pbtop.py "$1" 8 ${2:+"$2"}
	fi
}

echo "== 1. memory that rises under load and stays =="
echo "\$ LD_PRELOAD=$lib HEAPTAP_DIR=$work $examples/leaky_server --idle 60 &"
LD_PRELOAD="$lib" HEAPTAP_DIR="$work" "$examples/leaky_server" --idle 60 >"$work/server.log" 2>&1 &
server_pid=$!
for ((i = 0; i < 1200; i++)); do
	grep -q '^phase idle' "$work/server.log" && break
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.1
done
cat "$work/server.log"
grep -q '^phase idle' "$work/server.log" || {
	echo "demo: leaky_server did not reach its idle phase" >&2
	exit 1
}
echo "\$ kill -USR2 $server_pid"
kill -USR2 "$server_pid"
heap="$work/heaptap.$server_pid.0001.heap.pb.gz"
wait_for "$work/heaptap.$server_pid.0001.threads.pb.gz" 30
wait_for "$heap" 30
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=
echo
echo "\$ go tool pprof -top -sample_index=inuse_space $(basename "$heap")"
top "$heap" inuse_space | tee "$work/top.txt"
# The first row after the header names the site holding the most memory.
first=$(awk 'f && NF { print $NF; exit } /flat%|by leaf function/ { f = 1 }' "$work/top.txt")
echo
if [ "$first" = remember_session ]; then
	echo "demo: the leak is found: remember_session() holds the memory that stays."
else
	echo "demo: expected remember_session on top, got '${first:-nothing}'" >&2
	exit 1
fi

echo
echo "== 2. threads that never end =="
tdir="$work/threads"
mkdir -p "$tdir"
echo "\$ LD_PRELOAD=$lib HEAPTAP_DIR=$tdir $examples/thread_leak"
LD_PRELOAD="$lib" HEAPTAP_DIR="$tdir" "$examples/thread_leak" | tee "$work/threads.log"
tpid=$(awk '/^pid / { print $2; exit }' "$work/threads.log")
tprof="$tdir/heaptap.$tpid.0003.threads.pb.gz"
wait_for "$tprof" 10
echo
echo "\$ go tool pprof -top $(basename "$tprof")    # dump 3: pool running, 5 handlers stuck"
top "$tprof"
echo
echo "demo: spawn_handler() created the threads that never end; start_pool() is the"
echo "demo: fixed pool; the main thread counts once. Profiles were in $work (removed)."
