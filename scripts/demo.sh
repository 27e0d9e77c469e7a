#!/usr/bin/env bash
# scripts/demo.sh - the heaptap story in one command.
#
#  1. A service's memory rises under load and stays after the load stops:
#     examples/leaky_server runs under heaptap with a dump every 500 ms, and
#     `heaptap leaks` reads the series and names the leak. The leaking
#     function, remember_session(), must be ranked first.
#  2. A service leaks threads: examples/thread_leak runs under heaptap;
#     `heaptap threads` shows live threads by the stack that created them and
#     `heaptap leaks` calls it a thread leak.
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

examples=$(cd "$BUILD_DIR/examples" && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/heaptap-demo.XXXXXX")
cleanup() {
	rm -rf "$work"
}
trap cleanup EXIT

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

heaptap=$(cd "$BUILD_DIR/tools" && pwd -P)/heaptap

echo "== 1. memory that rises under load and stays =="
echo "\$ HEAPTAP_INTERVAL=500ms heaptap run --dir $work -- leaky_server --requests 4000 --rps 800 --idle 3"
HEAPTAP_INTERVAL=500ms "$heaptap" run --dir "$work" -- \
	"$examples/leaky_server" --requests 4000 --rps 800 --idle 3 | tee "$work/server.log"
server=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' "$work/server.log" | head -1)
[ -n "$server" ] || {
	echo "demo: leaky_server did not start" >&2
	exit 1
}
echo
echo "\$ heaptap leaks heaptap.$server.*.heap.pb.gz"
set +e
"$heaptap" leaks "$work"/heaptap."$server".*.heap.pb.gz
status=$?
set -e
echo "(exit status $status: 1 = a leak was found)"
"$heaptap" leaks --json "$work"/heaptap."$server".*.heap.pb.gz >"$work/leaks.json" || true
first=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stacks"]; print(s[0]["frames"][0] if s and s[0]["class"]=="leaking" else "")' "$work/leaks.json")
last=$(ls "$work"/heaptap."$server".*.heap.pb.gz | tail -1)
echo
echo "\$ heaptap top -n 5 $(basename "$last")"
"$heaptap" top -n 5 "$last"
echo
if [ "$status" -eq 1 ] && [ "$first" = remember_session ]; then
	echo "demo: the leak is found: remember_session() keeps memory that never comes back."
else
	echo "demo: expected a leak at remember_session, got exit $status and '${first:-nothing}'" >&2
	exit 1
fi
echo
echo "== 2. threads that never end =="
tdir="$work/threads"
mkdir -p "$tdir"
echo "\$ heaptap run --dir $tdir -- thread_leak"
"$heaptap" run --dir "$tdir" -- "$examples/thread_leak" | tee "$work/threads.log"
tpid=$(awk '/^pid / { print $2; exit }' "$work/threads.log")
tprof="$tdir/heaptap.$tpid.0005.threads.pb.gz"
wait_for "$tprof" 10
echo
echo "\$ heaptap threads $(basename "$tprof")"
"$heaptap" threads "$tprof"
echo
echo "\$ heaptap leaks heaptap.$tpid.*.heap.pb.gz"
set +e
"$heaptap" leaks "$tdir"/heaptap."$tpid".*.heap.pb.gz
status=$?
set -e
echo
if [ "$status" -eq 1 ]; then
	echo "demo: spawn_handler() created the threads that never end; start_pool() was the"
	echo "demo: fixed pool. Profiles were in $work (removed)."
else
	echo "demo: expected a thread leak (exit 1), got exit $status" >&2
	exit 1
fi
