#!/usr/bin/env bash
# bench/mimalloc_bench.sh - heaptap on the mimalloc-bench allocation benchmarks (issue 15).
#
#   bench/mimalloc_bench.sh MIMALLOC_BENCH_CHECKOUT [--reps N] [--threads N] [--lib FILE]
#                           [--only prog,prog] [--timeout SECONDS]
#
# MIMALLOC_BENCH_CHECKOUT is a checkout of https://github.com/daanx/mimalloc-bench or a
# bare git directory of it (its HEAD is used). Only the programs under its bench/ that build
# with bench/CMakeLists.txt (Release) and what Debian 12 has are run; sh6bench and sh8bench
# only when their sources (bench/shbench/sh*bench-new.c, fetched by mimalloc-bench's
# build-bench-env.sh) are present. The sources are copied to and built in $MBENCH_BUILD
# (kept; default: a temporary directory, removed at the end).
#
# Each program runs with the arguments mimalloc-bench's bench.sh gives it, with N threads
# (--threads, default 2) for its procs (rptest: 250 loops instead of 500, to stay near 10 s
# on 2 cores). Where bench.sh runs a program twice (1 thread and N threads) only the N-thread
# form is run; mleak runs as bench.sh's mleak100. Configurations, interleaved
# (for each repetition, for each program, for each configuration):
#   none       the program as is (glibc malloc)
#   default    LD_PRELOAD=--lib (default build/libheaptap.so), default HEAPTAP_RATE
#   rate1      the same with HEAPTAP_RATE=1 (every allocation recorded)
#   heaptrack  heaptrack -r -o FILE prog (record only, raw trace)
# Metric: wall seconds, except for the programs that run for a fixed time and print a rate
# (larson, larson-sized, xmalloc-test, rptest, glibc-thread): there it is bench.sh's
# "relative time" computed from that rate. Peak RSS is /usr/bin/time's %M (the largest
# process among the program and its waited-for children; for heaptrack, its own helper
# processes too). Each cell is the median over repetitions; ratios are against none.
# Prints a markdown table, geometric means and the two issue-15 checks (rate 1: geomean
# slowdown <= 2.5; no program slower under rate 1 than under heaptrack), and every run that
# failed (non-zero exit, signal, timeout, or no rate printed) with the command to repeat it.
# Profiles and traces go to a temporary directory removed at the end. Exit status 1 when a
# run failed. Timings on a busy or small machine are noisy: use --reps 3 or more.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
	sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^#  *//' >&2
	exit 2
}
die() {
	echo "mimalloc_bench.sh: $*" >&2
	exit 2
}

[ $# -ge 1 ] || usage
checkout="$1"
shift
reps=3
threads=2
lib="$root/build/libheaptap.so"
only=""
run_timeout=600
while [ $# -gt 0 ]; do
	case "$1" in
	--reps) reps="${2:?}" && shift 2 ;;
	--threads) threads="${2:?}" && shift 2 ;;
	--lib) lib="${2:?}" && shift 2 ;;
	--only) only="${2:?}" && shift 2 ;;
	--timeout) run_timeout="${2:?}" && shift 2 ;;
	*) usage ;;
	esac
done
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || die "--reps wants a positive integer"
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "--threads wants a positive integer"
[ -f "$lib" ] || die "no heaptap library at $lib (build heaptap or pass --lib)"
lib="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
for tool in cmake c++ heaptrack python3 timeout; do
	command -v "$tool" >/dev/null || die "needs $tool"
done
if [ ! -x /usr/bin/time ]; then
	sudo=()
	[ "$(id -u)" -ne 0 ] && sudo=(sudo)
	echo "mimalloc_bench.sh: installing time" >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time
fi

tmp="$(mktemp -d /tmp/heaptap-mbench.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
build="${MBENCH_BUILD:-$tmp/build}"
src="$build/src"
out="$tmp/out"
mkdir -p "$build" "$out"

# Sources: a work tree's bench/, or bench/ at HEAD of a (bare) git directory.
rm -rf "$src"
mkdir -p "$src"
if [ -f "$checkout/bench/CMakeLists.txt" ]; then
	cp -a "$checkout/bench/." "$src/"
elif git -C "$checkout" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$checkout" archive HEAD bench | tar -x -C "$src" --strip-components=1
else
	die "$checkout is neither a mimalloc-bench checkout nor a git directory of one"
fi
[ -f "$src/CMakeLists.txt" ] || die "no bench/CMakeLists.txt in $checkout"
# bench/CMakeLists.txt names the shbench sources unconditionally; an empty stand-in lets
# it configure when they were never fetched (those two programs are then not built).
have_sh=1
for f in sh6bench-new.c sh8bench-new.c; do
	if [ ! -s "$src/shbench/$f" ]; then
		have_sh=0
		: >"$src/shbench/$f"
	fi
done

N="$threads"
# name | metric | command, run in the build directory (@SRC@: the bench sources; a
# trailing "< FILE" is the program's standard input). Metric: wall, or the rate parser.
programs=(
	"cfrac|wall|./cfrac 17545186520507317056371138836327483792789528"
	"espresso|wall|./espresso @SRC@/espresso/largest.espresso"
	"barnes|wall|./barnes < @SRC@/barnes/input"
	"larson|larson|./larson 5 8 1000 5000 100 4141 $N"
	"larson-sized|larson|./larson-sized 5 8 1000 5000 100 4141 $N"
	"alloc-test|wall|./alloc-test $N"
	"sh6bench|wall|./sh6bench $((2 * N))"
	"sh8bench|wall|./sh8bench $((2 * N))"
	"xmalloc-test|xmalloc|./xmalloc-test -w $N -t 5 -s 64"
	"cache-scratch|wall|./cache-scratch $N 1000 1 2000000 $N"
	"cache-thrash|wall|./cache-thrash $N 1000 1 2000000 $N"
	"glibc-simple|wall|./glibc-simple"
	"glibc-thread|glibc-thread|./glibc-thread $N"
	"malloc-large|wall|./malloc-large"
	"mstress|wall|./mstress $N 50 25"
	"rptest|rptest|./rptest $N 0 1 2 250 1000 100 8 16000"
	"mleak|wall|./mleak 50"
)
selected=()
for p in "${programs[@]}"; do
	name="${p%%|*}"
	case "$name" in sh6bench | sh8bench) [ "$have_sh" = 1 ] || continue ;; esac
	if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then
		continue
	fi
	selected+=("$p")
done
[ "${#selected[@]}" -gt 0 ] || die "no program selected"
targets=()
for p in "${selected[@]}"; do targets+=("${p%%|*}"); done

echo "building ${targets[*]} in $build" >&2
cmake -S "$src" -B "$build/out" -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 ||
	{ cat "$tmp/cmake.log" >&2 && die "cmake configure failed"; }
cmake --build "$build/out" -j"$(nproc)" --target "${targets[@]}" >"$tmp/build.log" 2>&1 ||
	{ tail -30 "$tmp/build.log" >&2 && die "build failed"; }
bin="$build/out"

configs=(none default rate1 heaptrack)
# Prints the value of a rate-metric program's output file, or nothing.
rate_metric() { # <metric> <stdout file>
	local v=""
	case "$1" in
	larson) v="$(sed -n 's/.* time: \([0-9.]*\).*/\1/p' "$2" | tail -1)" ;;
	xmalloc) v="$(sed -n 's/^rtime: \([0-9.]*\).*/\1/p' "$2" | tail -1)" ;;
	rptest)
		v="$(sed -n 's/.*\.\.\.*\([0-9][0-9]*\) memory ops.*/\1/p' "$2" | tail -1)"
		[ -n "$v" ] && v="$(python3 -c "print(2000000 / $v)")"
		;;
	glibc-thread)
		v="$(sed -n 's/^\([0-9][0-9]*\) iterations.*/\1/p' "$2" | tail -1)"
		[ -n "$v" ] && v="$(python3 -c "print(1000000000 / $v)")"
		;;
	esac
	echo "$v"
}

results="$tmp/results.tsv" # name config rep value rss_kib
failures="$tmp/failures.txt"
: >"$results"
: >"$failures"
start=$EPOCHREALTIME
for ((rep = 1; rep <= reps; rep++)); do
	for p in "${selected[@]}"; do
		IFS='|' read -r name metric cmd <<<"$p"
		cmd="${cmd//@SRC@/$src}"
		input=/dev/null
		if [[ "$cmd" == *" < "* ]]; then
			input="${cmd##* < }"
			cmd="${cmd% < *}"
		fi
		read -r -a argv <<<"$cmd"
		for c in "${configs[@]}"; do
			hdir="$out/$name-$c"
			mkdir -p "$hdir"
			case "$c" in
			none) pre=() ;;
			default) pre=(env "LD_PRELOAD=$lib" "HEAPTAP_DIR=$hdir") ;;
			rate1) pre=(env "LD_PRELOAD=$lib" "HEAPTAP_DIR=$hdir" HEAPTAP_RATE=1) ;;
			heaptrack) pre=(heaptrack -r -o "$hdir/trace") ;;
			esac
			full=("${pre[@]}" "${argv[@]}")
			log="$tmp/run.out"
			t0=$EPOCHREALTIME
			rc=0
			(cd "$bin" && /usr/bin/time -f '%M' -o "$tmp/rss" \
				timeout -k 10 "$run_timeout" "${full[@]}" <"$input" >"$log" 2>"$tmp/run.err") || rc=$?
			t1=$EPOCHREALTIME
			rss="$(tail -1 "$tmp/rss" 2>/dev/null || true)"
			[[ "$rss" =~ ^[0-9]+$ ]] || rss=0
			value="$(python3 -c "print(${t1/./} / 1e6 - ${t0/./} / 1e6)")"
			why=""
			if [ "$rc" -eq 124 ]; then
				why="timed out after ${run_timeout}s"
			elif [ "$rc" -gt 128 ]; then
				why="killed by signal $((rc - 128))"
			elif [ "$rc" -ne 0 ]; then
				why="exit status $rc"
			elif [ "$metric" != wall ]; then
				value="$(rate_metric "$metric" "$log")"
				[ -n "$value" ] || why="printed no rate"
			fi
			if [ -n "$why" ]; then
				printf -v shown '%q ' "${full[@]}"
				{
					echo "- $name, $c, repetition $rep: $why"
					echo "  cd $bin && ${shown}< $input"
					tail -3 "$tmp/run.err" | sed 's/^/    stderr: /'
				} >>"$failures"
				value=nan
			fi
			printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$rep" "$value" "$rss" >>"$results"
			printf 'rep %d/%d %-13s %-9s %.9s %s\n' "$rep" "$reps" "$name" "$c" \
				"$value" "${why:+FAILED: $why}" >&2
			rm -rf "$hdir"
		done
	done
done
elapsed="$(python3 -c "print(round(${EPOCHREALTIME/./} / 1e6 - ${start/./} / 1e6))")"

metrics=""
for p in "${selected[@]}"; do
	IFS='|' read -r name metric _ <<<"$p"
	metrics+="$name=$metric "
done
python3 - "$results" "$reps" "$threads" "$elapsed" "$metrics" <<'EOF'
import math, statistics, sys
path, reps, threads, elapsed, metrics = sys.argv[1:6]
metric = dict(m.split("=") for m in metrics.split())
configs = ["none", "default", "rate1", "heaptrack"]
vals, rss, order = {}, {}, []
for line in open(path):
    name, c, _, v, r = line.rstrip("\n").split("\t")
    if name not in order:
        order.append(name)
    if v != "nan":
        vals.setdefault((name, c), []).append(float(v))
    rss.setdefault((name, c), []).append(int(r) / 1024)

def med(d, k):
    return statistics.median(d[k]) if k in d else None

def gm(xs):
    xs = [x for x in xs if x is not None]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None

def f(x, fmt):
    return "—" if x is None else fmt.format(x)

print(f"mimalloc-bench, {threads} threads, median of {reps} repetitions; "
      f"ratios against none (lower is better)\n")
print("| program | metric | none s | ×default | ×rate 1 | ×heaptrack "
      "| RSS MiB none | default | rate 1 | heaptrack |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
ratios = {c: [] for c in configs[1:]}
worse = []
for name in order:
    base = med(vals, (name, "none"))
    row = {}
    for c in configs[1:]:
        m = med(vals, (name, c))
        row[c] = m / base if (m is not None and base) else None
        ratios[c].append(row[c])
    if row["rate1"] is not None and row["heaptrack"] is not None \
            and row["rate1"] > row["heaptrack"]:
        worse.append(f"{name} (×{row['rate1']:.2f} vs heaptrack ×{row['heaptrack']:.2f})")
    kind = "wall" if metric[name] == "wall" else "rel. time"
    cells = [name, kind, f(base, "{:.3f}")]
    cells += [f(row[c], "×{:.2f}") for c in configs[1:]]
    cells += [f(med(rss, (name, c)), "{:.1f}") for c in configs]
    print("| " + " | ".join(cells) + " |")
g = {c: gm(ratios[c]) for c in configs[1:]}
print("| **geomean** | | | " + " | ".join(f(g[c], "**×{:.2f}**") for c in configs[1:])
      + " | | | | |")
print()
print("rel. time: the program runs for a fixed time; bench.sh's relative time from the rate it "
      "prints (larson, xmalloc-test: its own figure; rptest: 2e6/ops per CPU second; "
      "glibc-thread: 1e9/iterations).")
print()
n = len(order)
missing = [name for name, r in zip(order, ratios["rate1"]) if r is None]
ok1 = g["rate1"] is not None and g["rate1"] <= 2.5 and not missing
print("| issue 15 check | result | detail |")
print("|---|---|---|")
print(f"| rate 1, allocation benchmarks: geomean ≤ ×2.5 | **{'pass' if ok1 else 'miss'}** "
      f"| ×{f(g['rate1'], '{:.2f}')} over {n - len(missing)} programs"
      + (f"; no result: {', '.join(missing)}" if missing else "") + " |")
print(f"| rate 1: no program worse than heaptrack | **{'pass' if not worse else 'miss'}** "
      f"| {len(worse)} of {n} slower than heaptrack" + (": " + "; ".join(worse) if worse else "")
      + " |")
print(f"\ntotal run time {elapsed} s")
EOF

if [ -s "$failures" ]; then
	echo
	echo "Failed runs:"
	cat "$failures"
	exit 1
fi
echo
echo "No failed runs."
