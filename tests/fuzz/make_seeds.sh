#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh - the seed corpus of fuzz_prof: real heaptap
# profiles, each kept gzipped (as written) and gunzipped (raw protobuf, where
# the mutations reach the decoder).
#
#   tests/fuzz/make_seeds.sh LIBHEAPTAP_SO EXAMPLES_BINDIR OUTDIR
#
# leaky_server (one heap and one thread profile at exit) and thread_leak (its
# first and last API dumps), both at HEAPTAP_RATE=1 so the stacks, labels and
# comments are all there. The runs are short and small: every seed is a few
# KiB (libFuzzer takes the largest seed as its input size limit).
set -euo pipefail

if [ $# -ne 3 ]; then
	echo "usage: $0 LIBHEAPTAP_SO EXAMPLES_BINDIR OUTDIR" >&2
	exit 2
fi
lib=$(realpath "$1")
bindir=$(realpath "$2")
out=$3
for f in "$lib" "$bindir/leaky_server" "$bindir/thread_leak"; do
	[ -e "$f" ] || { echo "make_seeds: missing $f" >&2; exit 1; }
done

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # run NAME PROGRAM ARGS...
	local name=$1
	shift
	mkdir "$work/$name"
	(cd "$work/$name" &&
		env HEAPTAP_RATE=1 HEAPTAP_AT_EXIT=1 HEAPTAP_DIR="$work/$name" \
			LD_PRELOAD="$lib" "$@" >/dev/null)
}
run leaky "$bindir/leaky_server" --requests 40 --idle 0
run threads "$bindir/thread_leak"

keep() { # keep FILE SEEDNAME: the file as written, and gunzipped
	cp "$1" "$out/$2.pb.gz"
	gzip -dc "$1" >"$out/$2.pb"
}
n=0
for f in "$work"/leaky/heaptap.*.pb.gz; do
	kind=${f%.pb.gz}
	keep "$f" "leaky_server.${kind##*.}"
	n=$((n + 1))
done
mapfile -t dumps < <(find "$work/threads" -name 'heaptap.*.pb.gz' | sort)
[ "${#dumps[@]}" -gt 0 ] || { echo "make_seeds: thread_leak wrote no profile" >&2; exit 1; }
last=$(echo "${dumps[-1]##*/}" | cut -d. -f3)
for f in "${dumps[@]}"; do
	base=${f##*/} # heaptap.<pid>.<seq>.<kind>.pb.gz
	seq=$(echo "$base" | cut -d. -f3)
	kind=$(echo "$base" | cut -d. -f4)
	if [ "$seq" = 0001 ] || [ "$seq" = "$last" ]; then
		keep "$f" "thread_leak.$seq.$kind"
		n=$((n + 1))
	fi
done
if [ "$n" -lt 4 ]; then
	echo "make_seeds: only $n profiles written" >&2
	exit 1
fi
echo "make_seeds: $((2 * n)) seeds in $out ($(du -sk "$out" | cut -f1) KiB)"
