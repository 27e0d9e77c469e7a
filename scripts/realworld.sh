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
	[ "$mode" = ht ] && (sleep 2; usr2_children "$spid") &
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
		[ $prc = 0 ] && ! echo "$p" | grep -q "profiles=0 "; then
		result PASS redis "identical ($h) $p"
	else
		result FAIL redis "base=[$b] heaptap=[$h] $p (logs $d)"
	fi
}

# ------------------------------------------------------------------ python
# Python's own regression tests, run by /usr/bin/python3 (not a pyenv
# shim), with and without heaptap: the sets of passed and failed modules
# must match.
PYTESTS="test_threading test_subprocess test_signal test_fork1 test_ctypes test_mmap"
py_run() { # py_run MODE DIR
	local mode=$1 d=$2
	mkdir -p "$d"
	(cd "$d" && ht "$mode" timeout 1500 "$PY" -m test -j2 --timeout 600 $PYTESTS \
		>"$d/out.log" 2>&1)
	echo $? >"$d/rc"
	"$PY" - "$d/out.log" >"$d/result" <<'EOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
tail = text[text.rfind("== Tests result") if "== Tests result" in text else -4000:]
ok, bad = set(), set()
for m in re.finditer(r"^\d+:\d+:\d+ .*?\[\s*\d+/\d+(?:/\d+)?\]\s+(test_\w+)(.*)$", text, re.M):
    name, rest = m.group(1), m.group(2)
    (bad if re.search(r"failed|crashed|timed out|env changed", rest) else ok).add(name)
bad_summary = set()
for blk in re.finditer(r"\d+ tests? (?:failed|crashed|altered the execution environment)[^:]*:\n((?:    .*\n)+)", text):
    bad_summary |= set(blk.group(1).split())
bad |= bad_summary
ok -= bad
print("ok=%s failed=%s" % (",".join(sorted(ok)), ",".join(sorted(bad)) or "none"))
EOF
}

t_python() {
	need_pkgs libpython3.11-testsuite || { result FAIL python "cannot install libpython3.11-testsuite"; return; }
	local d=$WORK/python
	mkdir -p "$d/prof"
	HTDIR=$d/prof
	py_run base "$d/base"
	py_run ht "$d/ht"
	local b h p
	b=$(cat "$d/base/result")
	h=$(cat "$d/ht/result")
	p=$(profiles "$d/prof")
	local prc=$?
	if [ "$b" = "$h" ] && [ "$(cat "$d/base/rc")" = "$(cat "$d/ht/rc")" ] && [ $prc = 0 ]; then
		result PASS python "same pass/fail sets ($h; rc $(cat "$d/ht/rc")) $p"
	else
		result FAIL python "base=[$b rc $(cat "$d/base/rc")] heaptap=[$h rc $(cat "$d/ht/rc")] $p (logs $d)"
	fi
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
# so in one line, and nobody sends it SIGUSR2 here.
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
	nginx_run ht "$d/ht"
	local b h lines
	b=$(cat "$d/base/result")
	h=$(cat "$d/ht/result")
	lines=$(grep -c '^heaptap: ' "$d/ht/stderr.log")
	local usr2_line
	usr2_line=$(grep '^heaptap: ' "$d/ht/stderr.log" | grep -c 'SIGUSR2')
	if [ "$b" = "$h" ] && echo "$h" | grep -q "rc=0 responses_ok=yes" && [ "$usr2_line" -ge 1 ]; then
		result PASS nginx "identical ($h), heaptap left SIGUSR2 to nginx ($lines heaptap: lines)"
	else
		result FAIL nginx "base=[$b] heaptap=[$h] heaptap lines: $(grep '^heaptap: ' "$d/ht/stderr.log" | head -3 | tr '\n' '|') (logs $d)"
	fi
}

# ---------------------------------------------------------------- postgres
# PostgreSQL 15: initdb in a temporary directory as the postgres user,
# pg_ctl start on a unix socket directory only, pgbench -i -s 2, pgbench
# -T 10, then pg_ctl stop -m fast. Compared: row counts, the pgbench
# balance invariant, failed transactions (0), a clean stop. PostgreSQL uses
# SIGUSR2 internally, so it is never sent here.
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
	[ "$mode" = ht ] && envs=(LD_PRELOAD="$LIB" HEAPTAP_DIR="$HTDIR")
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
	local hl
	hl=$(grep -h '^heaptap: ' "$d/ht/server.log" "$d/ht/initdb.log" 2>/dev/null | sort | uniq -c | head -3 | tr -s ' ' | tr '\n' '|')
	if [ "$b" = "$h" ] && echo "$h" | grep -q "initdb_rc=0 init_rc=0 bench_rc=0 query=\[200000|2|20|t \] number of failed transactions: 0 stop_rc=0 signals_in_log=0"; then
		result PASS postgres "identical ($h; base $(cat "$d/base/extra"), heaptap $(cat "$d/ht/extra")) heaptap said: ${hl:-nothing}"
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
