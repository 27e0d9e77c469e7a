#!/usr/bin/env python3
"""bench/run.py - heaptap's benchmark suite driver (python3, stdlib only).

Runs every benchmark under every profiler configuration, interleaved
(A B C A B C ...) within one invocation, repeats, and writes bench/RESULTS.md
with medians, ratios to the run without a profiler (median of per-repetition
ratios), peak RSS and heaptap's own memory. See bench/README.md for the method.

Usage: bench/run.py --build BUILD_DIR [--quick] [--reps N] [--out FILE]
                    [--only bench,bench] [--json FILE]
scripts/bench.sh builds heaptap and the benchmarks and calls this.
"""
import argparse
import datetime
import glob
import gzip
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"
JEMALLOC = LIBDIR + "/libjemalloc.so.2"
TCMALLOC = LIBDIR + "/libtcmalloc.so.4"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# --------------------------------------------------------------- configs
# name -> (description, baseline for "÷ its own allocator")
CONFIG_INFO = {
    "none": ("glibc malloc, no profiler", None),
    "heaptap": ("LD_PRELOAD=libheaptap.so, default rate (512 KiB)", "none"),
    "heaptap-r1": ("heaptap, HEAPTAP_RATE=1 (every allocation)", "none"),
    "heaptrack": ("heaptrack 1.4 recording (`heaptrack -r -o FILE prog`: raw trace, no live interpreter)", "none"),
    "jemalloc": ("LD_PRELOAD=libjemalloc.so.2, no profiling", None),
    "jemalloc-prof": ("jemalloc, MALLOC_CONF=prof:true,lg_prof_sample:19", "jemalloc"),
    "tcmalloc": ("LD_PRELOAD=libtcmalloc.so.4 (gperftools), no sampling", None),
    "tcmalloc-sample": ("tcmalloc, TCMALLOC_SAMPLE_PARAMETER=524288", "tcmalloc"),
    "gperf-heapprof": ("tcmalloc + HEAPPROFILE (gperftools heap profiler, every allocation)",
                       "tcmalloc"),
}


class Env:
    def __init__(self, build, tmp):
        self.build = build
        self.lib = os.path.join(build, "libheaptap.so")
        self.benchdir = os.path.join(build, "bench")
        self.tmp = tmp
        self.htdir = os.path.join(tmp, "heaptap-out")
        self.scratch = os.path.join(tmp, "scratch")
        self.at_exit = False
        for d in (self.htdir, self.scratch):
            os.makedirs(d, exist_ok=True)

    def config(self, name):
        """(environment additions, argv prefix) for a configuration."""
        s = self.scratch
        if name == "none":
            return {}, []
        ae = {"HEAPTAP_AT_EXIT": "1"} if self.at_exit else {}
        if name == "heaptap":
            return dict(ae, LD_PRELOAD=self.lib, HEAPTAP_DIR=self.htdir), []
        if name == "heaptap-r1":
            return dict(ae, LD_PRELOAD=self.lib, HEAPTAP_DIR=self.htdir, HEAPTAP_RATE="1"), []
        if name == "heaptrack":
            # -r: record only (raw trace, zstd-compressed); its live
            # interpreter is left out (see bench/README.md).
            return {}, ["heaptrack", "-r", "-o", os.path.join(s, "heaptrack.%p")]
        if name == "jemalloc":
            return {"LD_PRELOAD": JEMALLOC}, []
        if name == "jemalloc-prof":
            return {"LD_PRELOAD": JEMALLOC, "MALLOC_CONF":
                    "prof:true,lg_prof_sample:19,prof_prefix:" + os.path.join(s, "jeprof")}, []
        if name == "tcmalloc":
            return {"LD_PRELOAD": TCMALLOC}, []
        if name == "tcmalloc-sample":
            return {"LD_PRELOAD": TCMALLOC, "TCMALLOC_SAMPLE_PARAMETER": "524288"}, []
        if name == "gperf-heapprof":
            big = str(1 << 50)
            return {"LD_PRELOAD": TCMALLOC, "HEAPPROFILE": os.path.join(s, "hprof"),
                    "HEAP_PROFILE_ALLOCATION_INTERVAL": big, "HEAP_PROFILE_INUSE_INTERVAL": big}, []
        raise KeyError(name)

    def clean(self):
        for d in (self.htdir, self.scratch):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d, exist_ok=True)

    def heaptap_own_bytes(self):
        """Largest heaptap_own_bytes= comment in the profiles heaptap wrote."""
        best = None
        for f in glob.glob(os.path.join(self.htdir, "*.heap.pb.gz")):
            try:
                data = gzip.open(f).read()
            except (OSError, EOFError):
                continue
            for m in re.finditer(rb"heaptap_own_bytes=(\d+)", data):
                v = int(m.group(1))
                best = v if best is None else max(best, v)
        return best


# ----------------------------------------------------------------- running
def wait_child(pid, deadline, poll=0.002):
    """Reap pid (a process-group leader) with its rusage; SIGKILL the group at the
    deadline. Returns (status, rusage, timed_out)."""
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            return status, ru, False
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            _, status, ru = os.wait4(pid, 0)
            return status, ru, True
        time.sleep(poll)


def run_measured(argv, env_add, timeout, cwd=None, stdin_path=None):
    """Like run_proc but with exact per-child peak RSS via os.wait4."""
    env = dict(os.environ)
    env.update(env_add)
    fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    outf = tempfile.TemporaryFile()
    errf = tempfile.TemporaryFile()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setsid()
            if cwd:
                os.chdir(cwd)
            os.dup2(fin.fileno() if fin is not subprocess.DEVNULL else os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(outf.fileno(), 1)
            os.dup2(errf.fileno(), 2)
            os.execvpe(argv[0], argv, env)
        except Exception as e:  # noqa
            os.write(2, str(e).encode())
        os._exit(127)
    status, ru, timed_out = wait_child(pid, t0 + timeout)
    if timed_out:
        status = -999
    wall = time.monotonic() - t0
    if fin is not subprocess.DEVNULL:
        fin.close()
    outf.seek(0)
    errf.seek(0)
    out = outf.read().decode(errors="replace")
    err = errf.read().decode(errors="replace")
    rc = os.waitstatus_to_exitcode(status) if status != -999 else -999
    return out, wall, ru.ru_maxrss if ru else 0, rc, err


RESULT_RE = re.compile(r"^RESULT (.*)$", re.M)


def parse_results(out):
    """{key: value} from RESULT lines; key = bench + the non-metric fields."""
    res = {}
    for line in RESULT_RE.findall(out):
        kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "value" not in kv or kv.get("metric") == "none":
            continue
        ident = [kv["bench"]] + ["%s=%s" % (k, kv[k]) for k in kv
                                 if k not in ("bench", "metric", "value") and
                                 k in ("size", "threads", "stacks", "workers", "rate", "phase")]
        res[" ".join(ident)] = float(kv["value"])
    return res


# ------------------------------------------------------------- benchmarks
class Bench:
    """One benchmark: name, configs it runs under, and how to run it once."""
    lower_is_better = True
    unit = ""
    timeout = 300

    def __init__(self, e, args):
        self.e = e
        self.args = args

    def setup(self):
        pass

    def teardown(self):
        pass


class CBench(Bench):
    def __init__(self, e, args, name, argv, unit, configs):
        super().__init__(e, args)
        self.name, self.argv, self.unit, self.configs = name, argv, unit, configs

    def run(self, cfg):
        env, prefix = self.e.config(cfg)
        argv = prefix + [os.path.join(self.e.benchdir, self.argv[0])] + self.argv[1:]
        out, wall, rss, rc, err = run_measured(argv, env, self.timeout, cwd=self.e.scratch)
        if rc != 0:
            return None, rss, "exit %s: %s" % (rc, err.strip()[-300:])
        return parse_results(out), rss, None


class WallBench(Bench):
    """A real program timed from outside: metric = wall seconds."""
    unit = "s"

    def __init__(self, e, args, name, configs):
        super().__init__(e, args)
        self.name, self.configs = name, configs


class SqliteBench(WallBench):
    def setup(self):
        n = 60000 if self.args.quick else 200000
        self.sql = os.path.join(self.e.tmp, "build.sql")
        with open(self.sql, "w") as f:
            f.write("""PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c BLOB);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM n WHERE x<%d)
INSERT INTO t SELECT x, hex(randomblob(12)), (x*7919)%%1000, randomblob(x%%200) FROM n;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b, a);
SELECT b, count(*), sum(length(c)) FROM t GROUP BY b ORDER BY 3 DESC LIMIT 1;
SELECT count(DISTINCT substr(a,1,3)) FROM t;
""" % n)
        self.rows = n

    def run(self, cfg):
        env, prefix = self.e.config(cfg)
        db = os.path.join(self.e.scratch, "bench.db")
        if os.path.exists(db):
            os.unlink(db)
        out, wall, rss, rc, err = run_measured(prefix + ["sqlite3", db], env, self.timeout,
                                               stdin_path=self.sql)
        os.path.exists(db) and os.unlink(db)
        if rc != 0:
            return None, rss, "exit %s: %s" % (rc, err.strip()[-300:])
        return {"sqlite rows=%d" % self.rows: wall}, rss, None


class CompileBench(WallBench):
    """make -j2 running cc1 -O2 -g on heaptap's own preprocessed sources;
    each cc1 runs under the profiler (make itself does not)."""

    def setup(self):
        self.dir = os.path.join(self.e.tmp, "compile")
        os.makedirs(self.dir, exist_ok=True)
        cflags = subprocess.run(["pkg-config", "--cflags", "libunwind", "libdw"],
                                capture_output=True, text=True).stdout.split()
        srcs = sorted(glob.glob(os.path.join(ROOT, "src", "*.c")))
        if self.args.quick:
            srcs = srcs[::2]
        objs = []
        for s in srcs:
            i = os.path.join(self.dir, os.path.basename(s)[:-2] + ".i")
            subprocess.run(["gcc", "-E", "-D_GNU_SOURCE",
                            "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "src")]
                           + cflags + [s, "-o", i], check=True)
            objs.append(os.path.basename(i)[:-2] + ".s")
        cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True,
                             text=True).stdout.strip()
        with open(os.path.join(self.dir, "Makefile"), "w") as f:
            f.write("all: %s\n%%.s: %%.i\n\t$(WRAP) %s -quiet -O2 -g -fpreprocessed $< -o $@\n"
                    % (" ".join(objs), cc1))
        self.nfiles = len(objs)

    def run(self, cfg):
        env, prefix = self.e.config(cfg)
        for f in glob.glob(os.path.join(self.dir, "*.s")):
            os.unlink(f)
        wrap = ["env"] + ["%s=%s" % kv for kv in env.items()] + prefix
        out, wall, rss, rc, err = run_measured(
            ["make", "-s", "-j2", "-C", self.dir, "WRAP=" + " ".join(wrap)], {}, self.timeout)
        if rc != 0:
            return None, rss, "exit %s: %s" % (rc, err.strip()[-300:])
        return {"compile files=%d" % self.nfiles: wall}, rss, None


class LiveBench(Bench):
    """bench_live: N live blocks of 32-80 B held; what each profiler keeps per
    live allocation, from the process's own peak RSS (VmHWM: in-process memory
    only, so heaptrack's out-of-process interpreter and compressor are not
    counted) minus the same figure without the profiler, divided by N."""
    unit = "bytes"
    timing = False

    def __init__(self, e, args, configs, blocks):
        super().__init__(e, args)
        self.name, self.configs, self.blocks = "live", configs, blocks

    def run(self, cfg):
        env, prefix = self.e.config(cfg)
        argv = prefix + [os.path.join(self.e.benchdir, "bench_live"), str(self.blocks)]
        out, wall, rss, rc, err = run_measured(argv, env, self.timeout, cwd=self.e.scratch)
        if rc != 0:
            return None, rss, "exit %s: %s" % (rc, err.strip()[-300:])
        res = {}
        for line in RESULT_RE.findall(out):
            kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if kv.get("bench") == "live" and "what" in kv:
                res["live %s blocks=%s" % (kv["what"], kv["blocks"])] = float(kv["value"])
        return res, rss, None


class RedisBench(Bench):
    lower_is_better = False
    unit = "req/s"

    def __init__(self, e, args, configs):
        super().__init__(e, args)
        self.name, self.configs = "redis", configs

    def run(self, cfg):
        env, prefix = self.e.config(cfg)
        sock = os.path.join(self.e.scratch, "redis.sock")
        conf = os.path.join(self.e.scratch, "redis.conf")
        with open(conf, "w") as f:
            f.write("port 0\nunixsocket %s\nsave \"\"\nappendonly no\ndir %s\n"
                    "daemonize no\nlogfile \"\"\nloglevel warning\n" % (sock, self.e.scratch))
        full = dict(os.environ)
        full.update(env)
        outf = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.dup2(outf.fileno(), 1)
            os.dup2(outf.fileno(), 2)
            argv = prefix + ["redis-server", conf]
            os.execvpe(argv[0], argv, full)
        try:
            ok = False
            for _ in range(300):
                r = subprocess.run(["redis-cli", "-s", sock, "ping"], capture_output=True,
                                   text=True)
                if r.stdout.strip() == "PONG":
                    ok = True
                    break
                time.sleep(0.05)
            if not ok:
                return None, 0, "redis did not start"
            n = "30000" if self.args.quick else "100000"
            r = subprocess.run(["redis-benchmark", "-s", sock, "-n", n, "-P", "16", "-c", "20",
                                "-r", "100000", "-d", "64", "-t", "set,get,lpush,lpop,sadd",
                                "--csv"], capture_output=True, text=True, timeout=600)
            res = {}
            for line in r.stdout.splitlines():
                cols = [c.strip('"') for c in line.split('","')]
                if len(cols) >= 2 and cols[0] != "test":
                    try:
                        res["redis %s" % cols[0].split()[0].lower()] = float(cols[1])
                    except ValueError:
                        pass
            subprocess.run(["redis-cli", "-s", sock, "shutdown", "nosave"], capture_output=True)
        finally:
            _, ru, _ = wait_child(pid, time.monotonic() + 120, poll=0.01)
        if not res:
            outf.seek(0)
            return None, ru.ru_maxrss, "no results: " + outf.read().decode(errors="replace")[-300:]
        return res, ru.ru_maxrss, None


# ------------------------------------------------------------------ stats
def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def run_suite(benches, reps, log):
    """data[bench][cfg] = list of (results dict, rss KiB, own bytes) per rep."""
    data = {b.name: {c: [] for c in b.configs} for b in benches}
    own = {b.name: {} for b in benches}
    errors = []
    for b in benches:
        b.setup()
        t0 = time.monotonic()
        for rep in range(reps):
            for cfg in b.configs:
                b.e.clean()
                res, rss, err = b.run(cfg)
                if err:
                    errors.append("%s/%s rep %d: %s" % (b.name, cfg, rep, err))
                    log("  ! %s %s: %s" % (b.name, cfg, err))
                data[b.name][cfg].append((res, rss, None))
            log("  %s rep %d/%d done (%.0f s)" % (b.name, rep + 1, reps, time.monotonic() - t0))
        # One more run per heaptap config with HEAPTAP_AT_EXIT=1, outside the
        # timed set: heaptap's own memory from the profile comment, and the
        # peak RSS with a dump at exit.
        b.e.at_exit = True
        for cfg in ("heaptap", "heaptap-r1"):
            if cfg in b.configs:
                b.e.clean()
                res, rss, err = b.run(cfg)
                own[b.name][cfg] = (b.e.heaptap_own_bytes(), rss)
        b.e.at_exit = False
        b.teardown()
    return data, errors, own


def summarize(bench, cfgdata):
    """keys -> cfg -> dict(median, slowdown vs none, slowdown vs own, rss)"""
    keys = []
    for runs in cfgdata.values():
        for res, _, _ in runs:
            for k in (res or {}):
                if k not in keys:
                    keys.append(k)
    out = {}
    for k in keys:
        row = {}
        for cfg, runs in cfgdata.items():
            vals = [r[0].get(k) if r[0] else None for r in runs]
            row[cfg] = {"median": median(vals), "vals": vals}
        for cfg in row:
            for label, base in (("vs_none", "none"), ("vs_own", CONFIG_INFO[cfg][1])):
                if not base or base not in row:
                    continue
                ratios = []
                for v, bv in zip(row[cfg]["vals"], row[base]["vals"]):
                    if v and bv:
                        ratios.append(v / bv if bench.lower_is_better else bv / v)
                row[cfg][label] = median(ratios)
        out[k] = row
    rss = {cfg: median([r[1] for r in runs]) for cfg, runs in cfgdata.items()}
    own = {cfg: median([r[2] for r in runs]) for cfg, runs in cfgdata.items()}
    return out, rss, own


# ------------------------------------------------------------ dump bench
def run_dump(e, args, log):
    counts = "1000,10000,100000"
    period = "500" if args.quick else "1000"
    runs = []
    for rep in range(1 if args.quick else 2):
        e.clean()
        out, wall, rss, rc, err = run_measured(
            [os.path.join(e.benchdir, "bench_dump"), counts, "1,2", period],
            {"LD_PRELOAD": e.lib, "HEAPTAP_RATE": "1", "HEAPTAP_DIR": e.htdir}, 600)
        stacks = 0
        sizes = []
        for f in glob.glob(os.path.join(e.htdir, "*.heap.pb.gz")):
            sizes.append(os.path.getsize(f))
            try:
                m = re.search(rb"heaptap_stacks=(\d+)", gzip.open(f).read())
                if m:
                    stacks = max(stacks, int(m.group(1)))
            except (OSError, EOFError):
                pass
        lines = [l for l in out.splitlines() if l.startswith("RESULT")]
        runs.append({"lines": lines, "rc": rc, "err": err.strip()[-500:], "rss_kib": rss,
                     "max_stacks_in_profile": stacks,
                     "max_heap_profile_bytes": max(sizes) if sizes else 0})
        log("  dump rep %d rc=%s" % (rep + 1, rc))
    return runs


# ------------------------------------------------------------- callgrind
def run_callgrind(e, args, log):
    """Instructions per malloc+free pair: Ir(N2) - Ir(N1) over N2 - N1 pairs."""
    if not shutil.which("valgrind"):
        return None
    n1, n2 = 100000, 600000
    res = {}
    for cfg in ("none", "heaptap", "heaptap-r1", "jemalloc", "tcmalloc"):
        env, _ = e.config(cfg)
        env = {k: v for k, v in env.items() if k != "HEAPTAP_AT_EXIT"}
        for size in (64, 1024):
            irs = []
            for n in (n1, n2) if cfg != "heaptap-r1" else (n1 // 10, n2 // 10):
                out, wall, rss, rc, err = run_measured(
                    ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                     os.path.join(e.benchdir, "bench_malloc"), "--pairs", str(n), str(size)],
                    env, 600)
                m = re.search(r"Collected : (\d+)", err)
                irs.append(int(m.group(1)) if m else None)
            if None in irs:
                continue
            dn = (n2 - n1) if cfg != "heaptap-r1" else (n2 - n1) // 10
            res["%s size=%d" % (cfg, size)] = (irs[1] - irs[0]) / dn
        log("  callgrind %s done" % cfg)
    return res


# ---------------------------------------------------------------- versions
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except Exception:  # noqa
        return ""


def machine_info(e):
    model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    def pkg(p):
        return sh("dpkg-query -W -f='${Version}' %s 2>/dev/null" % p) or "not installed"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model, "nproc": str(os.cpu_count()),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "gcc": sh("gcc -dumpfullversion"),
        "glibc": platform.libc_ver()[1],
        "heaptap": sh("strings %s | grep -m1 -E '^heaptap [0-9]'" % e.lib) or
        sh("grep -m1 '^#define HEAPTAP_VERSION_STRING' %s/include/heaptap.h" % ROOT),
        "heaptap_commit": sh("git -C %s rev-parse --short HEAD" % ROOT) +
        (" (+ uncommitted changes)" if sh("git -C %s status --porcelain -- src include" % ROOT)
         else ""),
        "heaptrack": pkg("heaptrack"), "jemalloc": pkg("libjemalloc2"),
        "tcmalloc": pkg("libgoogle-perftools4"), "redis": pkg("redis-server"),
        "sqlite3": pkg("sqlite3"), "valgrind": pkg("valgrind"),
    }


# ----------------------------------------------------------------- report
def fmt(v, nd=1):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    return "%.*f" % (nd, v)


def fx(r):
    return "—" if r is None else "%.2f×" % r


def write_report(path, info, args, configs_used, summaries, dump_runs, cg, errors, elapsed):
    L = []
    w = L.append
    w("# heaptap benchmark results\n")
    w("Generated by `scripts/bench.sh%s` on %s in %.0f s. Method: `bench/README.md`.\n"
      % (" --quick" if args.quick else "", info["date"], elapsed))
    w("## Machine and versions\n")
    w("| | |\n|---|---|")
    for k in ("cpu", "nproc", "kernel", "os", "gcc", "glibc", "heaptap", "heaptap_commit",
              "heaptrack", "jemalloc", "tcmalloc", "redis", "sqlite3", "valgrind"):
        w("| %s | %s |" % (k, info.get(k, "")))
    w("")
    w("## Configurations\n")
    w("| name | what | \"÷ own allocator\" baseline |\n|---|---|---|")
    for c in configs_used:
        w("| `%s` | %s | %s |" % (c, CONFIG_INFO[c][0], CONFIG_INFO[c][1] or "—"))
    w("\n%d repetitions per benchmark, configurations interleaved within each repetition. "
      "Cells: median of the metric; `×none` = median over repetitions of the per-repetition "
      "cost ratio to `none` (for throughput, none/config, so >1 is always slower); `×own` = "
      "the same against the profiler's own allocator without profiling.\n" % args.reps)

    targets = evaluate_targets(summaries, dump_runs)
    w("## Targets (issue 6)\n")
    w("| target | result | figure |\n|---|---|---|")
    for t in targets:
        w("| %s | **%s** | %s |" % t)
    w("")

    for bname, (rows, rss, own, bench) in summaries.items():
        if isinstance(bench, LiveBench):
            write_live(w, rows, rss, bench)
            continue
        cfgs = list(bench.configs)
        w("## %s (%s, %s)\n" % (bname, bench.unit, "lower is better" if bench.lower_is_better
                                else "higher is better"))
        w("| case | " + " | ".join("`%s`" % c for c in cfgs) + " |")
        w("|---|" + "---|" * len(cfgs))
        for k, row in rows.items():
            cells = []
            for c in cfgs:
                d = row.get(c, {})
                s = fmt(d.get("median"), 2 if bench.unit in ("s",) else 1)
                if c != "none" and d.get("vs_none") is not None:
                    s += " (%s" % fx(d.get("vs_none"))
                    if d.get("vs_own") is not None and CONFIG_INFO[c][1] != "none":
                        s += ", %s own" % fx(d.get("vs_own"))
                    s += ")"
                cells.append(s)
            w("| %s | %s |" % (k, " | ".join(cells)))
        if bname == "malloc":
            w("\nheaptap minus none, ns per pair (medians): " + "; ".join(
                "%s: %+.1f" % (k.replace("malloc ", ""),
                               row["heaptap"]["median"] - row["none"]["median"])
                for k, row in rows.items() if row.get("heaptap", {}).get("median")))
        w("\nPeak RSS, MiB (median; the process and its waited-for children, so "
          "heaptrack includes its interpreter): " +
          ", ".join("`%s` %s" % (c, fmt(rss[c] / 1024.0 if rss.get(c) else None))
                    for c in cfgs))
        o = [(c, own[c]) for c in cfgs if own.get(c)]
        if o:
            w("\nExtra run with HEAPTAP_AT_EXIT=1 (not in the timings): heaptap's own memory "
              "(`heaptap_own_bytes` in the at-exit profile) and peak RSS including that dump: " +
              ", ".join("`%s` %s MiB own, %s MiB peak" %
                        (c, fmt(v[0] / 1048576.0 if v[0] is not None else None, 2),
                         fmt(v[1] / 1024.0 if v[1] else None)) for c, v in o))
        w("")

    w("## Dumps\n")
    if dump_runs:
        w("`bench_dump` under heaptap at HEAPTAP_RATE=1: distinct live stacks, then "
          "`heaptap_dump()` timed on the calling thread (median of 3; the flusher does the "
          "same work for a signal). Stall test: worker threads time every malloc(64)+free "
          "while the main thread raises SIGUSR2 back to back (the dump runs on heaptap's "
          "flusher thread); max op latency in a quiet period vs during dumps.\n")
        w("```")
        for i, r in enumerate(dump_runs):
            w("# run %d: exit %s, peak RSS %.1f MiB, largest heap profile %d bytes, "
              "heaptap_stacks in profile %d" % (i + 1, r["rc"], r["rss_kib"] / 1024.0,
                                                r["max_heap_profile_bytes"],
                                                r["max_stacks_in_profile"]))
            for l in r["lines"]:
                w(l)
            if r["rc"] != 0:
                w("stderr: " + r["err"])
        w("```\n")
    if cg:
        w("## Instructions per malloc+free pair (callgrind)\n")
        w("`valgrind --tool=callgrind` (callgrind does not replace malloc, so a preloaded "
          "library is measured), single thread, (Ir(N2) − Ir(N1)) / (N2 − N1) pairs; rate 1 "
          "over 50k pairs. `perf stat -e instructions` is not supported in this VM.\n")
        w("| config | 64 B | 1024 B |\n|---|---|---|")
        for c in ("none", "heaptap", "heaptap-r1", "jemalloc", "tcmalloc"):
            w("| `%s` | %s | %s |" % (c, fmt(cg.get(c + " size=64")),
                                    fmt(cg.get(c + " size=1024"))))
        w("")
    w("## Analysis\n")
    w("Why the missed targets are missed, by how much, and what would close them: "
      "[`ANALYSIS.md`](ANALYSIS.md) (written by hand from a profiling session; the figures "
      "above are this run's).\n")
    if errors:
        w("## Errors during the run\n")
        for e in errors[:40]:
            w("- " + e.replace("\n", " ")[:400])
        w("")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def live_per_block(rows, bench, cfg):
    """Median over repetitions of (peak RSS of cfg - peak RSS of its baseline)
    / blocks, the baseline being the run without a profiler on the same
    allocator (none, or tcmalloc for gperftools' profiler), same repetition."""
    key = "live peak_rss blocks=%d" % bench.blocks
    base = CONFIG_INFO[cfg][1] or "none"
    row = rows.get(key, {})
    if cfg not in row or base not in row:
        return None
    per = [(v - b) / bench.blocks for v, b in zip(row[cfg]["vals"], row[base]["vals"])
           if v is not None and b is not None]
    return median(per)


def write_live(w, rows, rss, bench):
    w("## Memory per live allocation (bytes, lower is better)\n")
    w("`bench_live %d`: holds %s live blocks of 32–80 B. Bytes per live allocation = the "
      "process's peak RSS (VmHWM) with the profiler minus without it, on the same allocator "
      "(`none`; `tcmalloc` for `gperf-heapprof`), ÷ the blocks; median over repetitions of the "
      "per-repetition difference. heaptrack's interpreter runs in another process and is not "
      "counted (`-r` records to a file). heaptap's own figure: `heaptap_stats().resident_bytes` "
      "÷ live samples, as in the `heaptap_bytes_per_live_sample=` comment.\n"
      % (bench.blocks, "{:,}".format(bench.blocks)))
    w("| config | peak RSS, MiB | bytes per live allocation | heaptap's own figure |")
    w("|---|---|---|---|")
    key = "live peak_rss blocks=%d" % bench.blocks
    own_key = "live heaptap_per_live_sample blocks=%d" % bench.blocks
    for c in bench.configs:
        peak = rows.get(key, {}).get(c, {}).get("median")
        per = None if c in ("none", "tcmalloc") else live_per_block(rows, bench, c)
        mine = rows.get(own_key, {}).get(c, {}).get("median")
        w("| `%s` | %s | %s | %s |" % (c, fmt(peak / 1048576.0 if peak else None),
                                       "—" if per is None else "%.1f" % per,
                                       "—" if mine is None else "%.1f" % mine))
    w("")


def evaluate_targets(summaries, dump_runs):
    T = []
    get = lambda b: summaries.get(b, (None,))[0]  # noqa
    # 1. default rate within +3 ns/pair
    m = get("malloc")
    if m:
        worst = None
        for k, row in m.items():
            if row.get("heaptap", {}).get("median") and row.get("none", {}).get("median"):
                d = row["heaptap"]["median"] - row["none"]["median"]
                if worst is None or d > worst[1]:
                    worst = (k, d)
        ok = [k for k, row in m.items()
              if row["heaptap"]["median"] - row["none"]["median"] <= 3.0]
        T.append(("default rate: microbench ≤ +3 ns/pair at every size and thread count",
                  "pass" if len(ok) == len(m) else "miss",
                  "%d/%d cells within +3 ns; worst %s %+.1f ns" %
                  (len(ok), len(m), worst[0].replace("malloc ", ""), worst[1])))
    # 2. alloc-heavy and redis within 3% geomean
    heavy, names = [], []
    for b in ("prodcons", "sites", "churn", "sqlite", "compile"):
        rows = get(b)
        for k, row in (rows or {}).items():
            r = row.get("heaptap", {}).get("vs_none")
            if r:
                heavy.append(r)
                names.append("%s %.3f" % (k, r))
    g = geomean(heavy)
    if g:
        T.append(("default rate: allocation-heavy benchmarks within 3% (geomean)",
                  "pass" if g <= 1.03 else "miss", "geomean ×%.3f (%s)" % (g, "; ".join(names))))
    rows = get("redis")
    if rows:
        rr = [row["heaptap"]["vs_none"] for row in rows.values()
              if row.get("heaptap", {}).get("vs_none")]
        g = geomean(rr)
        if g:
            T.append(("default rate: redis-benchmark within 3% (geomean over commands)",
                      "pass" if g <= 1.03 else "miss", "geomean ×%.3f" % g))
    # 3. rate 1 at most half of heaptrack's slowdown
    fails, total, worst = [], 0, None
    for b, (rows, _, _, bench) in summaries.items():
        if not getattr(bench, "timing", True):
            continue
        for k, row in rows.items():
            r1 = row.get("heaptap-r1", {}).get("vs_none")
            ht = row.get("heaptrack", {}).get("vs_none")
            if r1 is None or ht is None:
                continue
            total += 1
            frac = (r1 - 1) / (ht - 1) if ht > 1 else float("inf")
            if worst is None or frac > worst[1]:
                worst = (k, frac, r1, ht)
            if r1 - 1 > 0.5 * (ht - 1):
                fails.append("%s (×%.2f vs heaptrack ×%.2f)" % (k, r1, ht))
    if total:
        T.append(("rate 1: slowdown − 1 ≤ half of heaptrack's, every benchmark",
                  "pass" if not fails else "miss",
                  "%d/%d cases pass; worst %s: rate 1 ×%.2f vs heaptrack ×%.2f%s" %
                  (total - len(fails), total, worst[0], worst[2], worst[3],
                   ("; misses: " + ", ".join(fails[:8])) if fails else "")))
    # 4. rate-1 per-thread cost not rising 2 -> 8 threads
    if m:
        parts, bad = [], 0
        for size in (16, 64, 256, 1024, 4096, 65536):
            k2, k8 = "malloc size=%d threads=2" % size, "malloc size=%d threads=8" % size
            if k2 in m and k8 in m and m[k2].get("heaptap-r1", {}).get("median"):
                a = m[k2]["heaptap-r1"]["median"] - m[k2]["none"]["median"]
                b = m[k8]["heaptap-r1"]["median"] - m[k8]["none"]["median"]
                parts.append("%d B: +%.0f → +%.0f ns" % (size, a, b))
                if b > a * 1.10:
                    bad += 1
        pc = get("prodcons")
        if pc and "prodcons threads=2" in pc and "prodcons threads=8" in pc:
            a = pc["prodcons threads=2"]["heaptap-r1"]["median"] - pc["prodcons threads=2"]["none"]["median"]
            b = pc["prodcons threads=8"]["heaptap-r1"]["median"] - pc["prodcons threads=8"]["none"]["median"]
            parts.append("prodcons: +%.0f → +%.0f ns" % (a, b))
            if b > a * 1.10:
                bad += 1
        T.append(("rate 1: added cost per pair not rising from 2 to 8 threads (10% slack)",
                  "pass" if bad == 0 else "miss", "; ".join(parts)))
    # 5. dumps
    if dump_runs:
        d100, stall, quiet = [], [], []
        for r in dump_runs:
            for l in r["lines"]:
                kv = dict(f.split("=", 1) for f in l.split()[1:] if "=" in f)
                if kv.get("bench") == "dump" and kv.get("stacks") == "100000":
                    d100.append(float(kv["value"]))
                if kv.get("bench") == "stall" and kv.get("phase") == "dumping":
                    stall.append((float(kv["value"]), kv["workers"], kv["rate"], kv["over_1ms"]))
                if kv.get("bench") == "stall" and kv.get("phase") == "quiet":
                    quiet.append(float(kv["value"]))
        if d100:
            T.append(("dump of 100k distinct stacks < 200 ms",
                      "pass" if median(d100) < 200 else "miss",
                      "median %.0f ms (runs: %s)" % (median(d100),
                                                     ", ".join("%.0f" % x for x in d100))))
        if stall:
            mx = max(stall)
            T.append(("no application thread stall > 1 ms during a dump",
                      "pass" if mx[0] <= 1000 else "miss",
                      "worst op during dumps %.2f ms (%s workers, rate %s, %s ops > 1 ms); "
                      "worst op in quiet periods %.2f ms" % (mx[0] / 1000, mx[1], mx[2], mx[3],
                                                             max(quiet) / 1000 if quiet else 0)))
    # Issue 15: rate 1 against heaptrack, one thread, small blocks.
    if m:
        parts, bad = [], 0
        for size in (16, 64, 256, 1024):
            row = m.get("malloc size=%d threads=1" % size)
            if not row or not all(row.get(c, {}).get("median") for c in
                                  ("none", "heaptap-r1", "heaptrack")):
                continue
            a = row["heaptap-r1"]["median"] - row["none"]["median"]
            h = row["heaptrack"]["median"] - row["none"]["median"]
            parts.append("%d B: +%.0f ns vs heaptrack +%.0f (%.2f of it)" % (size, a, h, a / h))
            if a > h / 3:
                bad += 1
        if parts:
            T.append(("rate 1, 1 thread, 16–1024 B pair: added cost ≤ ⅓ of heaptrack's (issue 15)",
                      "pass" if bad == 0 else "miss", "; ".join(parts)))
    rows = get("redis")
    if rows:
        r1 = geomean([row["heaptap-r1"]["vs_none"] for row in rows.values()
                      if row.get("heaptap-r1", {}).get("vs_none")])
        ht = geomean([row["heaptrack"]["vs_none"] for row in rows.values()
                      if row.get("heaptrack", {}).get("vs_none")])
        if r1 and ht:
            T.append(("rate 1, redis-benchmark geomean: slowdown − 1 ≤ ½ of heaptrack's (issue 15)",
                      "pass" if r1 - 1 <= 0.5 * (ht - 1) else "miss",
                      "rate 1 ×%.2f, heaptrack ×%.2f (%.2f of its slowdown)" %
                      (r1, ht, (r1 - 1) / (ht - 1) if ht > 1 else float("inf"))))
    if m:
        parts, bad = [], 0
        for nt in (1, 2, 8):
            row = m.get("malloc size=65536 threads=%d" % nt)
            if row and row.get("heaptap", {}).get("median") and row.get("none", {}).get("median"):
                d = row["heaptap"]["median"] - row["none"]["median"]
                parts.append("%d thread%s %+.1f ns" % (nt, "" if nt == 1 else "s", d))
                if d > 6:
                    bad += 1
        if parts:
            T.append(("default rate, 64 KiB pair ≤ +6 ns (issue 15)",
                      "pass" if bad == 0 else "miss", "; ".join(parts)))
    ch = get("churn")
    if ch:
        for k, row in ch.items():
            r = row.get("heaptap", {}).get("vs_none")
            if r:
                T.append(("default rate, thread churn ≤ ×1.10 (issue 15)",
                          "pass" if r <= 1.10 else "miss", "%s ×%.3f" % (k, r)))
    # Issue 15: heaptap's memory per live allocation at rate 1.
    lv = summaries.get("live")
    if lv:
        per = live_per_block(lv[0], lv[3], "heaptap-r1")
        if per is not None:
            ht = live_per_block(lv[0], lv[3], "heaptrack")
            gp = live_per_block(lv[0], lv[3], "gperf-heapprof")
            T.append(("rate 1: memory per live allocation ≤ 48 B (issue 15; 24 B the moonshot)",
                      "pass" if per <= 48 else "miss",
                      "%.1f B per live allocation (%s blocks)%s%s" % (
                          per, "{:,}".format(lv[3].blocks),
                          "; heaptrack %.1f B" % ht if ht is not None else "",
                          "; gperf-heapprof %.1f B" % gp if gp is not None else "")))
    # 6. RSS
    worst, ok, tot = None, 0, 0
    for b, (rows, rss, own, bench) in summaries.items():
        if rss.get("heaptap") and rss.get("none"):
            tot += 1
            lim = rss["none"] * 1.05 + 8 * 1024
            over = rss["heaptap"] - lim
            if over <= 0:
                ok += 1
            if worst is None or over > worst[1]:
                worst = (b, over, rss["none"], rss["heaptap"])
    if tot:
        T.append(("default rate: peak RSS ≤ none × 1.05 + 8 MiB",
                  "pass" if ok == tot else "miss",
                  "%d/%d benchmarks; tightest %s: %.1f → %.1f MiB (%+.1f MiB vs the limit)" %
                  (ok, tot, worst[0], worst[2] / 1024, worst[3] / 1024, worst[1] / 1024)))
    return T


# -------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="cmake build dir with libheaptap.so, bench/")
    ap.add_argument("--quick", action="store_true", help="~3 minute run: shorter, fewer reps")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--json", default=None, help="also write raw data here")
    ap.add_argument("--only", default=None, help="comma list of benchmarks to run")
    ap.add_argument("--no-heapprof", action="store_true", help="skip gperftools HEAPPROFILE")
    args = ap.parse_args()
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="heaptap-bench-")
    e = Env(build, tmp)
    os.environ.setdefault("HOME", tmp)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    have = lambda c: shutil.which(c) is not None  # noqa
    alloc_cfgs = ["none", "heaptap", "heaptap-r1"]
    if have("heaptrack"):
        alloc_cfgs.append("heaptrack")
    if os.path.exists(JEMALLOC):
        alloc_cfgs += ["jemalloc", "jemalloc-prof"]
    if os.path.exists(TCMALLOC):
        alloc_cfgs += ["tcmalloc", "tcmalloc-sample"]
        if not args.quick and not args.no_heapprof:
            alloc_cfgs.append("gperf-heapprof")
    # gperftools' HEAPPROFILE is ~60x: keep it off the long-running programs.
    light = [c for c in alloc_cfgs if c != "gperf-heapprof"]
    q = args.quick
    ms = lambda full, quick: str(quick if q else full)  # noqa
    benches = [
        CBench(e, args, "malloc", ["bench_malloc", ms(100, 50)], "ns/pair", alloc_cfgs),
        CBench(e, args, "prodcons", ["bench_prodcons", ms(300, 150)], "ns/pair", alloc_cfgs),
        CBench(e, args, "sites", ["bench_sites", ms(300, 150)], "ns/op", alloc_cfgs),
        CBench(e, args, "churn", ["bench_churn", ms(300, 150)], "µs/thread", alloc_cfgs),
        SqliteBench(e, args, "sqlite", light),
        CompileBench(e, args, "compile", light),
    ]
    if have("redis-server") and have("redis-benchmark"):
        rc = ["none", "heaptap", "heaptap-r1"] + (["heaptrack"] if have("heaptrack") else [])
        rc.append("jemalloc-prof")  # redis-server links jemalloc: prof ÷ its own allocator
        benches.append(RedisBench(e, args, rc))
    # Memory per live allocation: heaptap at rate 1 (and the default rate),
    # heaptrack, gperftools' heap profiler (÷ tcmalloc, its allocator).
    lc = [c for c in ("none", "heaptap", "heaptap-r1", "heaptrack", "tcmalloc", "gperf-heapprof")
          if c in alloc_cfgs]
    benches.append(LiveBench(e, args, lc, 300000 if q else 1000000))
    if args.only:
        keep = args.only.split(",")
        benches = [b for b in benches if b.name in keep]
    t0 = time.monotonic()
    info = machine_info(e)
    log("heaptap bench: %d reps, %s, tmp %s" % (args.reps, "quick" if q else "full", tmp))
    data, errors, owns = run_suite(benches, args.reps, log)
    summaries = {}
    for b in benches:
        rows, rss, _ = summarize(b, data[b.name])
        summaries[b.name] = (rows, rss, owns[b.name], b)
    dump_runs = run_dump(e, args, log) if not args.only or "dump" in args.only else []
    cg = run_callgrind(e, args, log) if not args.only or "callgrind" in args.only else None
    used = []
    for b in benches:
        for c in b.configs:
            if c not in used:
                used.append(c)
    write_report(args.out, info, args, used, summaries, dump_runs, cg, errors,
                 time.monotonic() - t0)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "data": data, "dump": dump_runs, "callgrind": cg,
                       "errors": errors}, f, indent=1, default=str)
    log("wrote %s (%.0f s)" % (args.out, time.monotonic() - t0))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
