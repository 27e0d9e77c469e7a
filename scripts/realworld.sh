#!/bin/bash
# realworld.sh - run real programs from Debian packages with and without
# heaptap and require identical results (issue 5). Not part of ctest or CI.
#
#   scripts/realworld.sh [--lib PATH/libheaptap.so] [--keep] [PROGRAM...]
#
# PROGRAM is any of: redis python sqlite git make nginx postgres (default:
# all). Prints one line per program:  PASS|FAIL <program> <detail>
# and exits 1 if any program failed. Installs what it needs with apt-get
# (idempotent: only packages that are missing). Needs root for apt-get and
# for PostgreSQL (it runs initdb as the postgres user through runuser).
#
# Each program runs twice, in its own temporary directory: once plainly and
# once with LD_PRELOAD=libheaptap.so and HEAPTAP_DIR=<tmp>; where it makes
# sense SIGUSR2 is sent during the heaptap run, and the profiles it produced
# must all decode (scripts/realworld/checkprof.py). Logs stay in the work
# directory, which is kept when something fails (or with --keep).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
LIB=""
KEEP=0
PROGRAMS=()
while [ $# -gt 0 ]; do
	case "$1" in
	--lib) LIB=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	*) PROGRAMS+=("$1"); shift ;;
	esac
done
if [ -z "$LIB" ]; then
	for c in "$SRC/build/libheaptap.so" /tmp/hr/libheaptap.so; do
		[ -e "$c" ] && LIB=$c && break
	done
fi
if [ -z "$LIB" ] || [ ! -e "$LIB" ]; then
	echo "realworld.sh: libheaptap.so not found; build it and pass --lib PATH" >&2
	exit 2
fi
LIB=$(readlink -f "$LIB")
[ ${#PROGRAMS[@]} -eq 0 ] && PROGRAMS=(redis python sqlite git make nginx postgres)

WORK=$(mktemp -d /tmp/heaptap-realworld.XXXXXX)
chmod 755 "$WORK"
FAILED=0
CHECKPROF="$HERE/realworld/checkprof.py"
PY=/usr/bin/python3

log() { echo "  [$(date +%T)] $*" >&2; }
result() { # result PASS|FAIL program detail...
	local st=$1 prog=$2
	shift 2
	echo "$st $prog $*"
	[ "$st" = PASS ] || FAILED=1
}

# ------------------------------------------------------------------ packages
need_pkgs() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		echo "realworld.sh: need root to install ${missing[*]}" >&2
		return 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
		{ apt-get update -q >>"$WORK/apt.log" 2>&1 &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" \
		      >>"$WORK/apt.log" 2>&1; }
}

# --------------------------------------------------------------- helpers
# ht MODE CMD...: run CMD plainly (MODE=base) or under heaptap (MODE=ht,
# HEAPTAP_DIR=$HTDIR).
ht() {
	local mode=$1
	shift
	if [ "$mode" = ht ]; then
		env LD_PRELOAD="$LIB" HEAPTAP_DIR="$HTDIR" ${HTEXTRA:-} "$@"
	else
		env -u LD_PRELOAD "$@"
	fi
}

# ht_exec MODE CMD...: the same, replacing the calling (sub)shell, so that
# `( ht_exec ht prog ... ) &` makes $! the program's own pid.
ht_exec() {
	local mode=$1
	shift
	if [ "$mode" = ht ]; then
		exec env LD_PRELOAD="$LIB" HEAPTAP_DIR="$HTDIR" ${HTEXTRA:-} "$@"
	else
		exec env -u LD_PRELOAD "$@"
	fi
}

profiles() { # profiles DIR -> summary; nonzero when broken
	"$PY" "$CHECKPROF" "$1"
}

# profiles_ok RC SUMMARY: profiles() passed and found at least one profile.
profiles_ok() {
	[ "$1" = 0 ] && ! echo "$2" | grep -q "profiles=0 "
}

wait_for() { # wait_for SECONDS COMMAND... (polls every 0.1 s)
	local t=$1
	shift
	local end=$((SECONDS + t))
	while [ $SECONDS -lt $end ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

usr2_children() { # send SIGUSR2 to pid $1 a few times, quietly
	for _ in 1 2 3; do kill -USR2 "$1" 2>/dev/null; sleep 0.5; done
}

# ------------------------------------------------------------------- redis
# redis-server (jemalloc underneath) on a unix socket, a deterministic
# redis-benchmark load (no -r: every op hits the same keys, so the final
# dataset is the same in both runs), BGSAVE every second during the load,
# SIGUSR2 during the heaptap run. Compared: DEBUG DIGEST, DBSIZE, the
# allocator, and every BGSAVE reporting rdb_last_bgsave_status:ok.
redis_run() { # redis_run MODE DIR -> writes DIR/result
	local mode=$1 d=$2
	mkdir -p "$d"
	local sock=$d/redis.sock
	ht "$mode" timeout 600 redis-server --port 0 --unixsocket "$sock" --save "" --dir "$d" \
		--appendonly no --enable-debug-command local --daemonize no \
		>"$d/server.log" 2>&1 &
	local pid=$!
	wait_for 20 redis-cli -s "$sock" ping || { echo "server did not start" >"$d/result"; kill "$pid"; return 1; }
	local spid
	spid=$(redis-cli -s "$sock" info server | awk -F: '/^process_id/{print $2}' | tr -d '\r')
	(
		for _ in $(seq 1 60); do
			redis-cli -s "$sock" bgsave >/dev/null 2>&1
			sleep 1
		done
	) &
	local saver=$!
	# Soon after the load starts: on a fast machine the whole load takes
	# about 2 s, and a signal after it would find the server gone.
	[ "$mode" = ht ] && (sleep 0.3; usr2_children "$spid") &
	timeout 300 redis-benchmark -s "$sock" -n 100000 -P 16 -c 20 -q \
		-t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,lrange_100,mset >"$d/bench.log" 2>&1
	local brc=$?
	kill "$saver" 2>/dev/null
	wait "$saver" 2>/dev/null
	wait_for 60 sh -c "redis-cli -s '$sock' info persistence | grep -q 'rdb_bgsave_in_progress:0'"
	redis-cli -s "$sock" bgsave >/dev/null 2>&1
	sleep 1
	wait_for 60 sh -c "redis-cli -s '$sock' info persistence | grep -q 'rdb_bgsave_in_progress:0'"
	local bgs alloc digest dbsize
	bgs=$(redis-cli -s "$sock" info persistence | grep rdb_last_bgsave_status | tr -d '\r')
	alloc=$(redis-cli -s "$sock" info memory | grep mem_allocator | tr -d '\r')
	digest=$(redis-cli -s "$sock" debug digest | tr -d '\r')
	dbsize=$(redis-cli -s "$sock" dbsize | tr -d '\r')
	redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1
	wait "$pid"
	local src=$?
	echo "bench_rc=$brc server_rc=$src $bgs $alloc digest=$digest dbsize=$dbsize" >"$d/result"
}

t_redis() {
	need_pkgs redis-server redis-tools || { result FAIL redis "cannot install redis"; return; }
	local d=$WORK/redis
	mkdir -p "$d/prof"
	HTDIR=$d/prof
	redis_run base "$d/base"
	redis_run ht "$d/ht"
	local b h p
	b=$(cat "$d/base/result")
	h=$(cat "$d/ht/result")
	p=$(profiles "$d/prof")
	local prc=$?
	if [ "$b" = "$h" ] && echo "$h" | grep -q "bench_rc=0 server_rc=0 rdb_last_bgsave_status:ok" &&
		profiles_ok "$prc" "$p"; then
		result PASS redis "identical ($h) $p"
	else
		result FAIL redis "base=[$b] heaptap=[$h] $p (logs $d)"
	fi
}

# ------------------------------------------------------------------ python
# CPython's own regression tests (Debian's libpython3.11-testsuite), run by
# Debian's /usr/bin/python3.11 (not a pyenv shim), one module at a time:
# plainly, then under heaptap at HEAPTAP_RATE=1 with HEAPTAP_INTERVAL=2s
# (every allocation sampled, a dump every 2 s from every process that lives
# that long). regrtest runs in-process with -v, and every test case's result
# is read from its log. Required: the same result per module and per test
# case, no processes left behind that the plain run does not leave, profiles
# from the modules that all decode, and the heaptap runs together not more
# than PYSLOW times slower. A run is bounded: regrtest's --timeout dumps the
# tracebacks and exits a minute before timeout(1) kills the run's process
# group; what the module left in that group is counted, then killed.
PYTESTS="test_threading test_threadsignals test_subprocess test_signal test_os
	test_multiprocessing_fork test_fork1 test_ctypes test_mmap"
PYT=/usr/bin/python3.11
PYTIMEOUT=${RW_PYTIMEOUT:-900} # seconds per module run
PYSLOW=3
py_run() { # py_run MODE DIR MODULE -> DIR/out.log, DIR/status
	local mode=$1 d=$2 m=$3
	mkdir -p "$d"
	local envs=(-u LD_PRELOAD)
	[ "$mode" = ht ] &&
		envs=(LD_PRELOAD="$LIB" HEAPTAP_DIR="$HTDIR" HEAPTAP_RATE=1 HEAPTAP_INTERVAL=2s)
	local t0 t1
	t0=$(date +%s%3N)
	# $! is timeout(1) itself, which leads the run's process group.
	(cd "$d" && exec timeout -k 30 "$PYTIMEOUT" env "${envs[@]}" "$PYT" -m test -v \
		--timeout $((PYTIMEOUT - 60)) "$m" >"$d/out.log" 2>&1) &
	local pid=$!
	wait "$pid"
	local rc=$?
	t1=$(date +%s%3N)
	local left
	left=$(pgrep -g "$pid" | wc -l)
	[ "$left" -gt 0 ] && kill -KILL -- "-$pid" 2>/dev/null
	echo "rc=$rc ms=$((t1 - t0)) leftover=$left" >"$d/status"
	log "python $m $mode: rc=$rc $(((t1 - t0) / 1000))s leftover=$left"
}

# py_compare DIR MODULE... : one line per module, then PASS|FAIL and detail.
py_compare() {
	"$PY" - "$PYSLOW" "$@" <<'EOF'
import os, re, sys
slow, d, mods = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
HDR = re.compile(r"^ {0,2}(\w+) \(([\w.]+)\)([^\n]*?)(?:\n[^\n]*?)? \.\.\. ", re.M)
ST = re.compile(r"^(ok|FAIL|ERROR|skipped\b.*|expected failure|unexpected success)$", re.M)
RANK = {"ok": 0, "skipped": 1, "unfinished": 2, "FAIL": 3, "ERROR": 3, "unexpected-success": 3}
BAD = ("FAIL", "ERROR", "unexpected-success", "unfinished")
ERR = re.compile(r"^={70}\n(?:FAIL|ERROR|UNEXPECTED SUCCESS): (\w+) \(([\w.]+)\)[^\n]*\n"
                 r"-{70}\n(.*?)(?=^={70}$|^-{70}$|\Z)", re.M | re.S)

def parse(rd):
    st = dict(kv.split("=") for kv in open(os.path.join(rd, "status")).read().split())
    text = open(os.path.join(rd, "out.log"), errors="replace").read()
    hdrs = list(HDR.finditer(text))
    cases, last = {}, None
    for i, h in enumerate(hdrs):
        seg = text[h.end():hdrs[i + 1].start() if i + 1 < len(hdrs) else len(text)]
        m = ST.search(seg)
        s = m and m.group(1)
        s = None if s is None else "ok" if s == "expected failure" else \
            "skipped" if s.startswith("skipped") else s.replace(" ", "-")
        cid = h.group(2) if h.group(2).endswith("." + h.group(1)) else \
            "%s.%s" % (h.group(2), h.group(1))
        if s is None and i == len(hdrs) - 1:
            last = cid  # where a killed run was
        old = cases.get(cid)
        if s is not None and (old is None or RANK[s] > RANK[old]):
            cases[cid] = s
        elif old is None:
            cases[cid] = None
    cases = {k: v or "unfinished" for k, v in cases.items()}
    why = {}  # case -> the last line of its traceback
    for e in ERR.finditer(text):
        cid = e.group(2) if e.group(2).endswith("." + e.group(1)) else \
            "%s.%s" % (e.group(2), e.group(1))
        lines = [x.strip() for x in e.group(3).splitlines() if x.strip()]
        why.setdefault(cid, lines[-1][:120] if lines else "")
    rc = int(st["rc"])
    res = re.findall(r"^Tests result: ([A-Z][A-Z ,]*)$", text, re.M)
    if rc in (124, 137):
        mod = "killed by timeout(1)"
    elif re.search(r"Timeout \(\d+:\d\d:\d\d\)!$", text, re.M):
        mod = "regrtest timeout"
    elif res:
        mod = {"SUCCESS": "passed", "FAILURE": "failed", "ENV CHANGED": "env-changed",
               "NO TESTS RAN": "no-tests-ran"}.get(res[-1].strip(), res[-1].strip().lower())
    else:
        mod = "crashed rc=%d" % rc
    if mod.startswith(("killed", "regrtest")) and last:
        mod += " in " + last
    return dict(mod=mod, cases=cases, why=why, ms=int(st["ms"]), left=int(st["leftover"]), rc=rc)

def short(names, n=6):
    names = sorted(names)
    return ",".join(names[:n]) + (" +%d more" % (len(names) - n) if len(names) > n else "")

fails, tb, th, nprof, npids, ncases, failed_mods, slows, how = [], 0, 0, 0, 0, 0, [], [], set()
for m in mods:
    b, h = parse(os.path.join(d, m, "base")), parse(os.path.join(d, m, "ht"))
    p = open(os.path.join(d, m, "prof.txt")).read().split("\n")
    prc, p = int(p[0]), p[1].strip()
    pm = re.match(r"profiles=(\d+) pids=(\d+) (\S+)", p)
    if pm:
        nprof, npids = nprof + int(pm.group(1)), npids + int(pm.group(2))
        how.add(pm.group(3))
    tb, th = tb + b["ms"], th + h["ms"]
    bc, hc = b["cases"], h["cases"]
    ncases += len(bc)
    diffs = []
    if b["mod"] != h["mod"]:
        diffs.append("module %s without, %s with heaptap" % (b["mod"], h["mod"]))
    only_h = [c for c in hc if hc[c] in BAD and bc.get(c) not in BAD]
    only_b = [c for c in bc if bc[c] in BAD and hc.get(c) not in BAD]
    if only_h:
        diffs.append("failing only under heaptap: " +
                     short("%s(%s)" % (c.split(".", 2)[-1], hc[c]) for c in only_h))
        diffs += ["  %s: %s" % (c.split(".", 2)[-1], h["why"][c])
                  for c in sorted(only_h)[:3] if h["why"].get(c)]
    if only_b:
        diffs.append("failing only without heaptap: " +
                     short("%s(%s)" % (c.split(".", 2)[-1], bc[c]) for c in only_b))
        diffs += ["  %s: %s" % (c.split(".", 2)[-1], b["why"][c])
                  for c in sorted(only_b)[:3] if b["why"].get(c)]
    for x, y, z in ((bc, hc, "under"), (hc, bc, "without")):
        gone = [c for c in x if c not in y and c not in only_h and c not in only_b]
        if gone:
            diffs.append("%d cases not run %s heaptap: %s" % (
                len(gone), z, short(c.split(".", 2)[-1] for c in gone)))
    other = [c for c in set(bc) & set(hc) if c not in only_h and c not in only_b and
             bc[c] != hc[c]]
    if other:
        diffs.append("results differ (without/with heaptap): " + short("%s(%s/%s)" % (
            c.split(".", 2)[-1], bc[c], hc[c]) for c in other))
    if b["left"] != h["left"]:
        diffs.append("left %d processes behind without, %d with heaptap" % (b["left"], h["left"]))
    if prc != 0:
        diffs.append("profiles: " + p)
    elif h["ms"] > 5000 and pm and pm.group(1) == "0":
        diffs.append("no profiles in %.0fs" % (h["ms"] / 1000))
    bad_b = sorted(c for c in bc if bc[c] in BAD)
    print("%-26s base %-12s %7.1fs %4d cases%s | heaptap %-12s %7.1fs x%.2f %4d cases | %s" % (
        m, b["mod"].split(" in ")[0], b["ms"] / 1000, len(bc),
        " (%d failing)" % len(bad_b) if bad_b else "", h["mod"].split(" in ")[0],
        h["ms"] / 1000, h["ms"] / max(b["ms"], 1), len(hc), p if prc == 0 else "profiles BAD"))
    for x in diffs:
        print("%-26s   DIFF %s" % ("", x))
    if diffs:
        fails.append("%s: %s" % (m, "; ".join(diffs)))
    if h["ms"] > slow * b["ms"] and h["ms"] - b["ms"] > 60000:
        print("%-26s   SLOW x%.1f: %.0fs more under heaptap" % (
            "", h["ms"] / b["ms"], (h["ms"] - b["ms"]) / 1000))
        slows.append("%s x%.1f" % (m, h["ms"] / b["ms"]))
    if b["mod"] != "passed":
        failed_mods.append("%s %s" % (m, b["mod"]))
ratio = th / max(tb, 1)
t = "time %.0fs without, %.0fs with heaptap (x%.2f%s)" % (
    tb / 1000, th / 1000, ratio, "; slowest " + ", ".join(slows) if slows else "")
if ratio > slow:
    fails.append("heaptap runs x%.2f slower in total (limit x%g)" % (ratio, slow))
if nprof == 0:
    fails.append("no profiles at all")
if fails:
    print("FAIL %s; %s" % (" | ".join(fails), t))
else:
    print("PASS %d modules, %d test cases: same result per module and per case%s; %s; "
          "profiles=%d pids=%d %s" % (len(mods), ncases,
          " (also without heaptap: %s)" % ", ".join(failed_mods) if failed_mods else "",
          t, nprof, npids, "/".join(sorted(how))))
EOF
}

t_python() {
	need_pkgs libpython3.11-testsuite || { result FAIL python "cannot install libpython3.11-testsuite"; return; }
	local d=$WORK/python m
	for m in $PYTESTS; do
		mkdir -p "$d/$m/prof"
		# sticky and world-writable like /tmp: children that change uid
		# (test_subprocess as root) may dump too
		chmod 1777 "$d/$m/prof"
		HTDIR=$d/$m/prof
		py_run base "$d/$m/base" "$m"
		py_run ht "$d/$m/ht" "$m"
		{ profiles "$HTDIR" >"$d/$m/prof.tmp"; echo $?; cat "$d/$m/prof.tmp"; } >"$d/$m/prof.txt"
	done
	# shellcheck disable=SC2086
	py_compare "$d" $PYTESTS >"$d/summary.txt" 2>&1
	sed '$d; s/^/    /' "$d/summary.txt" >&2
	local last
	last=$(tail -1 "$d/summary.txt")
	case "$last" in
	"PASS "*) result PASS python "${last#PASS }" ;;
	"FAIL "*) result FAIL python "${last#FAIL } (logs $d)" ;;
	*) result FAIL python "cannot compare: $last (logs $d)" ;;
	esac
}

# ------------------------------------------------------------------ sqlite
sqlite_run() { # sqlite_run MODE DIR
	local mode=$1 d=$2
	mkdir -p "$d"
	cat >"$d/script.sql" <<'EOF'
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 1000000)
INSERT INTO t SELECT x, (x * 7919) % 100003, printf('row-%08d-%s', x, hex(x * 31)) FROM c;
CREATE INDEX t_k ON t(k);
CREATE TABLE agg AS SELECT k % 1000 AS g, count(*) AS n, sum(length(v)) AS l FROM t GROUP BY 1;
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
PRAGMA integrity_check;
SELECT count(*), sum(k), max(v) FROM t;
SELECT g, n, l FROM agg ORDER BY n DESC, g LIMIT 5;
SELECT k, count(*) FROM t WHERE k BETWEEN 500 AND 510 GROUP BY k;
EOF
	# $! is sqlite3 itself (the SIGUSR2 target).
	(ht_exec "$mode" sqlite3 "$d/db.sqlite" <"$d/script.sql" >"$d/out.txt" 2>&1) &
	local pid=$!
	(exec >/dev/null 2>&1; sleep 900 & w=$!; trap 'kill $w' TERM; wait $w; kill -KILL "$pid") &
	local watchdog=$!
	if [ "$mode" = ht ]; then
		sleep 1
		usr2_children "$pid"
	fi
	wait "$pid"
	echo "rc=$?" >>"$d/out.txt"
	kill "$watchdog" 2>/dev/null
	wait "$watchdog" 2>/dev/null
}

t_sqlite() {
	need_pkgs sqlite3 || { result FAIL sqlite "cannot install sqlite3"; return; }
	local d=$WORK/sqlite
	mkdir -p "$d/prof"
	HTDIR=$d/prof
	sqlite_run base "$d/base"
	sqlite_run ht "$d/ht"
	local p
	p=$(profiles "$d/prof")
	local prc=$?
	if cmp -s "$d/base/out.txt" "$d/ht/out.txt" && grep -q '^ok$' "$d/ht/out.txt" &&
		grep -q '^rc=0$' "$d/ht/out.txt" && [ $prc = 0 ]; then
		result PASS sqlite "1e6 rows, integrity_check ok, identical output $p"
	else
		result FAIL sqlite "outputs differ or failed: $(diff "$d/base/out.txt" "$d/ht/out.txt" | head -5 | tr '\n' ' ') $p (logs $d)"
	fi
}

# --------------------------------------------------------------------- git
# A generated repository (2,000 files, 50 commits, fixed dates and
# identities, so hashes are identical), then gc --aggressive, repack
# -adf --threads=2, clone --no-local and fsck --full, all under heaptap in
# the second run (fork/exec-heavy, threaded pack-objects).
git_run() { # git_run MODE DIR
	local mode=$1 d=$2
	mkdir -p "$d"
	(
		set -e
		export GIT_AUTHOR_NAME=rw GIT_AUTHOR_EMAIL=rw@example.org GIT_COMMITTER_NAME=rw \
			GIT_COMMITTER_EMAIL=rw@example.org GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' \
			GIT_COMMITTER_DATE='2020-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME=$d
		cd "$d"
		ht "$mode" git init -q -b main repo
		cd repo
		for c in $(seq 1 50); do
			for f in $(seq 1 40); do
				n=$(( (c * 40 + f) % 2000 ))
				mkdir -p "dir$((n % 20))"
				printf 'file %d commit %d\n%s\n' "$n" "$c" "$(seq -s ' ' "$n" $((n + 30)))" \
					>"dir$((n % 20))/f$n.txt"
			done
			ht "$mode" git add -A
			ht "$mode" git commit -q -m "commit $c"
		done
		ht "$mode" git gc -q --aggressive
		ht "$mode" git repack -q -adf --threads=2
		ht "$mode" git fsck --full --no-progress 2>&1
		cd ..
		ht "$mode" git clone -q --no-local repo clone
		cd clone
		ht "$mode" git fsck --full --no-progress 2>&1
		git rev-parse HEAD HEAD~25 HEAD^{tree}
		git ls-tree -r HEAD | sha256sum
		git log --format='%H %s' | sha256sum
		git count-objects -v | grep -E '^(count|in-pack|packs|garbage)'
	) >"$d/out.txt" 2>&1
	echo "rc=$?" >>"$d/out.txt"
}

t_git() {
	need_pkgs git || { result FAIL git "cannot install git"; return; }
	local d=$WORK/git
	mkdir -p "$d/prof"
	HTDIR=$d/prof
	git_run base "$d/base"
	# Every git process (git runs many, each exec'd with LD_PRELOAD) writes
	# one pair at exit: each must be its own pid's and decode.
	HTEXTRA=HEAPTAP_AT_EXIT=1 git_run ht "$d/ht"
	local p
	p=$(profiles "$d/prof")
	local prc=$?
	if cmp -s "$d/base/out.txt" "$d/ht/out.txt" && grep -q '^rc=0$' "$d/ht/out.txt" && [ $prc = 0 ] &&
		! echo "$p" | grep -Eq 'pids=[01] '; then
		result PASS git "identical hashes and fsck output $(sed -n 1p "$d/ht/out.txt" | cut -c1-12) $p"
	else
		result FAIL git "outputs differ or failed: $(diff "$d/base/out.txt" "$d/ht/out.txt" | head -5 | tr '\n' ' ') $p (logs $d)"
	fi
}

# -------------------------------------------------------------------- make
# make -j2 over 200 generated C files (make spawns with clone3(CLONE_VFORK),
# gcc with vfork): identical objects (cmp) and binary, one profile per
# process at most, no name collisions.
make_gen() {
	local d=$1
	mkdir -p "$d"
	for i in $(seq 1 200); do
		cat >"$d/f$i.c" <<EOF
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct s$i { int a[$((i % 17 + 1))]; char name[32]; };
static int helper$i(int x) { return x * $i + (int)strlen("f$i"); }
int f$i(int n)
{
	struct s$i *p = calloc((size_t)n + 1, sizeof(*p));
	int sum = 0;
	for (int k = 0; k <= n; k++) {
		snprintf(p[k].name, sizeof(p[k].name), "f$i-%d", k);
		sum += helper$i(k) + (int)strlen(p[k].name);
	}
	free(p);
	return sum;
}
EOF
	done
	{
		for i in $(seq 1 200); do echo "int f$i(int n);"; done
		echo '#include <stdio.h>'
		echo 'int main(void) { long t = 0;'
		for i in $(seq 1 200); do echo "t += f$i(10);"; done
		echo 'printf("%ld\n", t); return 0; }'
	} >"$d/main.c"
	{
		echo "OBJS = main.o $(for i in $(seq 1 200); do printf 'f%d.o ' "$i"; done)"
		echo 'prog: $(OBJS)'
		printf '\t$(CC) -o $@ $(OBJS)\n'
		echo '%.o: %.c'
		printf '\t$(CC) -O2 -Wall -c $< -o $@\n'
	} >"$d/Makefile"
}

t_make() {
	need_pkgs make gcc || { result FAIL make "cannot install make gcc"; return; }
	local d=$WORK/make
	mkdir -p "$d/prof"
	HTDIR=$d/prof
	make_gen "$d/base"
	make_gen "$d/ht"
	(cd "$d/base" && ht base timeout 900 make -s -j2 >make.log 2>&1; echo "rc=$?" >>make.log)
	# One pair at exit from every process of the build (make, gcc, cc1, as,
	# ld, each exec'd with LD_PRELOAD): each must be its own pid's and decode.
	(cd "$d/ht" && HTEXTRA=HEAPTAP_AT_EXIT=1 ht ht timeout 900 make -s -j2 >make.log 2>&1
		echo "rc=$?" >>make.log)
	local diffs=0 n=0
	for o in "$d"/base/*.o "$d/base/prog"; do
		n=$((n + 1))
		cmp -s "$o" "$d/ht/$(basename "$o")" || diffs=$((diffs + 1))
	done
	local out1 out2 p
	out1=$("$d/base/prog" 2>&1)
	out2=$("$d/ht/prog" 2>&1)
	p=$(profiles "$d/prof")
	local prc=$?
	if [ $diffs = 0 ] && grep -q '^rc=0$' "$d/ht/make.log" && [ "$out1" = "$out2" ] && [ $prc = 0 ] &&
		! echo "$p" | grep -Eq 'pids=[01] '; then
		result PASS make "$n files identical (cmp), program output identical $p"
	else
		result FAIL make "$diffs of $n files differ; make: $(tail -1 "$d/ht/make.log"); out $out1/$out2; $p (logs $d)"
	fi
}

# ------------------------------------------------------------------- nginx
# nginx-light, master + 2 workers on 127.0.0.1:<high port>, a bounded curl
# loop, `nginx -s reload` (HUP), more requests; responses identical.
# nginx uses SIGUSR2 (binary upgrade): heaptap must leave it alone and say
# so in one line, and nobody sends it SIGUSR2 here. Under heaptap every
# allocation is sampled, with a dump every second and at each process's exit;
# the profiles must decode (and, with HEAPTAP_UNWIND_CHECK=1, show no mismatch).
nginx_run() { # nginx_run MODE DIR
	local mode=$1 d=$2
	mkdir -p "$d/www" "$d/logs" "$d/tmp"
	chmod 755 "$d" "$d/www"
	for i in $(seq 1 20); do
		head -c $((i * 3000)) /dev/urandom | base64 >"$d/www/file$i.txt"
	done
	cp "$WORK/nginx.page" "$d/www/index.html"
	chmod 644 "$d"/www/*
	local port
	port=$(free_port)
	local user_line=""
	[ "$(id -u)" = 0 ] && user_line="user www-data;"
	cat >"$d/nginx.conf" <<EOF
$user_line
daemon off;
master_process on;
worker_processes 2;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $d/tmp/body;
	proxy_temp_path $d/tmp/proxy;
	fastcgi_temp_path $d/tmp/fastcgi;
	uwsgi_temp_path $d/tmp/uwsgi;
	scgi_temp_path $d/tmp/scgi;
	server {
		listen 127.0.0.1:$port;
		root $d/www;
	}
}
EOF
	ht "$mode" timeout 300 nginx -c "$d/nginx.conf" -p "$d" >"$d/stdout.log" 2>"$d/stderr.log" &
	local pid=$!
	wait_for 20 curl -sf "http://127.0.0.1:$port/index.html" || { echo "nginx did not start" >"$d/result"; kill "$pid" 2>/dev/null; wait "$pid"; return 1; }
	local sums=$d/sums.txt
	: >"$sums"
	for round in 1 2; do
		for r in $(seq 1 10); do
			for i in $(seq 1 20); do
				curl -sf "http://127.0.0.1:$port/file$i.txt" | sha256sum | cut -c1-16 >>"$sums"
			done
		done
		curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/missing" >>"$sums"
		if [ $round = 1 ]; then
			ht "$mode" nginx -c "$d/nginx.conf" -p "$d" -s reload 2>>"$d/stderr.log"
			sleep 1
		fi
	done
	local usr2 master
	master=$(cat "$d/nginx.pid")
	usr2=$(awk '/^SigCgt/{print $2}' "/proc/$master/status")
	ht "$mode" nginx -c "$d/nginx.conf" -p "$d" -s quit 2>>"$d/stderr.log"
	wait "$pid"
	local rc=$?
	# Responses compare against the files themselves (each run has its own).
	local expect=$d/expect.txt
	: >"$expect"
	for round in 1 2; do
		for r in $(seq 1 10); do
			for i in $(seq 1 20); do sha256sum <"$d/www/file$i.txt" | cut -c1-16 >>"$expect"; done
		done
		echo 404 >>"$expect"
	done
	local same=no
	cmp -s "$sums" "$expect" && same=yes
	echo "rc=$rc responses_ok=$same requests=$(wc -l <"$sums") usr2_caught=$((0x$usr2 >> 11 & 1))" >"$d/result"
}

t_nginx() {
	need_pkgs nginx-light curl || { result FAIL nginx "cannot install nginx-light"; return; }
	local d=$WORK/nginx
	mkdir -p "$d/prof"
	chmod 777 "$d/prof"
	chmod +t "$d/prof"
	HTDIR=$d/prof
	echo "<html><body>heaptap realworld</body></html>" >"$WORK/nginx.page"
	nginx_run base "$d/base"
	# SIGUSR2 is nginx's, so the profiles come from the timer and the exit
	# of the master and its workers, every allocation sampled.
	HTEXTRA="HEAPTAP_RATE=1 HEAPTAP_INTERVAL=1s HEAPTAP_AT_EXIT=1" nginx_run ht "$d/ht"
	local b h lines p
	b=$(cat "$d/base/result")
	h=$(cat "$d/ht/result")
	p=$(profiles "$d/prof")
	local prc=$?
	lines=$(grep -c '^heaptap: ' "$d/ht/stderr.log")
	local usr2_line
	usr2_line=$(grep '^heaptap: ' "$d/ht/stderr.log" | grep -c 'SIGUSR2')
	if [ "$b" = "$h" ] && echo "$h" | grep -q "rc=0 responses_ok=yes" && [ "$usr2_line" -ge 1 ] &&
		profiles_ok "$prc" "$p"; then
		result PASS nginx "identical ($h), heaptap left SIGUSR2 to nginx ($lines heaptap: lines) $p"
	else
		result FAIL nginx "base=[$b] heaptap=[$h] $p heaptap lines: $(grep '^heaptap: ' "$d/ht/stderr.log" | head -3 | tr '\n' '|') (logs $d)"
	fi
}

# ---------------------------------------------------------------- postgres
# PostgreSQL 15: initdb in a temporary directory as the postgres user,
# pg_ctl start on a unix socket directory only, pgbench -i -s 2, pgbench
# -T 10, then pg_ctl stop -m fast. Compared: row counts, the pgbench
# balance invariant, failed transactions (0), a clean stop. PostgreSQL uses
# SIGUSR2 internally, so it is never sent here: under heaptap every allocation
# is sampled, with a dump every 2 s and at each process's exit, and the
# profiles must decode (with HEAPTAP_UNWIND_CHECK=1, with no mismatch).
PGBIN=/usr/lib/postgresql/15/bin
pg_as() { # run as the postgres user when root
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_run() { # pg_run MODE DIR
	local mode=$1 d=$2
	mkdir -p "$d/sock"
	[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$d"
	local data=$d/data
	local envs=()
	# SIGUSR2 is PostgreSQL's: profiles from the timer and each process's
	# exit, every allocation sampled.
	[ "$mode" = ht ] && envs=(LD_PRELOAD="$LIB" HEAPTAP_DIR="$HTDIR" HEAPTAP_RATE=1
		HEAPTAP_INTERVAL=2s HEAPTAP_AT_EXIT=1)
	{
		pg_as env -u LD_PRELOAD "${envs[@]}" timeout 300 "$PGBIN/initdb" -D "$data" -A trust \
			-U postgres --no-sync -E UTF8 --locale=C.UTF-8
		echo "initdb_rc=$?"
	} >"$d/initdb.log" 2>&1
	pg_as env -u LD_PRELOAD "${envs[@]}" timeout 120 "$PGBIN/pg_ctl" -D "$data" -l "$d/server.log" -w \
		-o "-k $d/sock -c listen_addresses= -c fsync=off" start >"$d/pgctl.log" 2>&1
	echo "start_rc=$?" >>"$d/pgctl.log"
	local psql=("$PGBIN/psql" -h "$d/sock" -U postgres -X -q -A -t)
	pg_as env "${envs[@]}" timeout 300 "$PGBIN/pgbench" -h "$d/sock" -U postgres -i -s 2 -q postgres \
		>"$d/pgbench-init.log" 2>&1
	local irc=$?
	pg_as env "${envs[@]}" timeout 120 "$PGBIN/pgbench" -h "$d/sock" -U postgres -T 10 -c 4 -j 2 postgres \
		>"$d/pgbench.log" 2>&1
	local brc=$?
	local q
	q=$(pg_as "${psql[@]}" -c "select (select count(*) from pgbench_accounts), (select count(*) from pgbench_branches), (select count(*) from pgbench_tellers), (select sum(abalance) from pgbench_accounts) = (select sum(bbalance) from pgbench_branches) and (select sum(bbalance) from pgbench_branches) = (select sum(tbalance) from pgbench_tellers)" postgres 2>&1 | tr '\n' ' ')
	local failed
	failed=$(grep -E 'number of failed transactions' "$d/pgbench.log" | sed 's/ (.*//' | tr -d '\n')
	local t0=$SECONDS
	pg_as env "${envs[@]}" timeout 120 "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >>"$d/pgctl.log" 2>&1
	local src=$? stop_s=$((SECONDS - t0))
	local sig
	sig=$(grep -c 'terminated by signal' "$d/server.log")
	echo "$(grep -h initdb_rc "$d/initdb.log") init_rc=$irc bench_rc=$brc query=[$q] $failed stop_rc=$src signals_in_log=$sig" >"$d/result"
	echo "stop_secs=$stop_s tps=$(grep -E '^tps' "$d/pgbench.log" | head -1 | awk '{print $3}')" >"$d/extra"
}

t_postgres() {
	need_pkgs postgresql-15 || { result FAIL postgres "cannot install postgresql-15"; return; }
	local d=$WORK/postgres
	mkdir -p "$d/prof"
	[ "$(id -u)" = 0 ] && chown postgres:postgres "$d/prof"
	chmod 700 "$d/prof"
	chmod 755 "$d"
	HTDIR=$d/prof
	pg_run base "$d/base"
	pg_run ht "$d/ht"
	local b h p
	b=$(cat "$d/base/result")
	h=$(cat "$d/ht/result")
	p=$(profiles "$d/prof" 2>&1)
	local prc=$?
	local hl
	hl=$(grep -h '^heaptap: ' "$d/ht/server.log" "$d/ht/initdb.log" 2>/dev/null | sort | uniq -c | head -3 | tr -s ' ' | tr '\n' '|')
	if [ "$b" = "$h" ] && echo "$h" | grep -q "initdb_rc=0 init_rc=0 bench_rc=0 query=\[200000|2|20|t \] number of failed transactions: 0 stop_rc=0 signals_in_log=0" && profiles_ok "$prc" "$p"; then
		result PASS postgres "identical ($h; base $(cat "$d/base/extra"), heaptap $(cat "$d/ht/extra")) $p heaptap said: ${hl:-nothing}"
	else
		result FAIL postgres "base=[$b] heaptap=[$h] $p (logs $d)"
	fi
}

# -------------------------------------------------------------------- main
log "heaptap: $LIB; work directory $WORK"
for prog in "${PROGRAMS[@]}"; do
	case "$prog" in
	redis | python | sqlite | git | make | nginx | postgres)
		log "$prog ..."
		"t_$prog"
		;;
	*) result FAIL "$prog" "unknown program" ;;
	esac
done
if [ $FAILED = 0 ] && [ $KEEP = 0 ]; then
	rm -rf "$WORK"
else
	log "logs kept in $WORK"
fi
exit $FAILED
