#!/usr/bin/env python3
"""The heaptap command's readers (top, threads, diff, leaks) against go tool pprof.

- top and diff agree with `go tool pprof -top` (and -diff_base) row for row:
  name, flat and cum as exact integers, in pprof's order (|flat|, then name),
  for every sample type of heaptap heap profiles (rate 1 and the default
  rate), thread profiles, Debian's legacy pprof testdata converted with
  `go tool pprof -proto`, and a Go runtime heap profile built here;
- `heaptap leaks` on Go profiles gives per-stack verdicts and says it has no
  process figures;
- bad files (truncated, garbage, random, empty, a directory, JSON...): exit 2,
  one `heaptap: ` line naming the file, nothing on stdout;
- threads --json adds up; every --json output parses.

pprof is run with -nodecount=1000 -nodefraction=0 -edgefraction=0 (nothing
trimmed) and -unit=B, which prints every value as an exact integer (counts
too, with a B suffix that is stripped). pprof prints " (inline)" or
" (partial-inline)" after a function reached only through inlined calls: a
column of its own, not part of the name, so it is stripped before comparing.
C++: the profiles carry mangled names, which heaptap prints as they are and
pprof demangles and simplifies (`_Z12cx_new_arrayv` -> `cx_new_array`), so
cxx_new is compared with -symbolize=none, and the default output is checked
to differ in exactly those names.
"""
import gzip
import json
import os
import random
import re
import subprocess

import htlib

PPROF_TOP = ["-top", "-nodecount=1000", "-nodefraction=0", "-edgefraction=0", "-unit=B"]
ROW = re.compile(r"^\s*(-?\d+)\S*\s+\S+%\s+\S+%\s+(-?\d+)\S*\s+\S+%  (.*)$")
INLINE = re.compile(r" \((?:partial-)?inline\)$")

GO_PROGRAM = r"""package main

import (
	"os"
	"runtime"
	"runtime/pprof"
)

var keep [][]byte

//go:noinline
func allocSmall(n int) {
	for i := 0; i < n; i++ {
		keep = append(keep, make([]byte, 512))
	}
}

//go:noinline
func allocLarge(n int) {
	for i := 0; i < n; i++ {
		keep = append(keep, make([]byte, 64<<10))
	}
}

func dump(path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		panic(err)
	}
	f.Close()
}

func main() {
	runtime.MemProfileRate = 1
	allocSmall(1000)
	allocLarge(20)
	dump(os.Args[1])
	allocSmall(2000)
	allocLarge(40)
	dump(os.Args[2])
}
"""


class Reader:
    def __init__(self, ctx):
        self.ctx = ctx
        self.env = htlib.clean_env()
        self.inline_labels = 0

    def run(self, args, timeout=60):
        return subprocess.run([self.ctx.cli] + [str(a) for a in args], env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)

    def json(self, args, what, ok_codes=(0,)):
        """heaptap ARGS --json: check the exit code and that stdout parses; the object."""
        # Options first: leaks stops reading options at its first file.
        p = self.run([args[0], "--json"] + list(args[1:]))
        try:
            obj = json.loads(p.stdout.decode())
            err = None
        except ValueError as e:
            obj, err = None, str(e)
        self.ctx.check(p.returncode in ok_codes and obj is not None,
                       "%s --json: exit %s, output parses" % (what, "/".join(map(str, ok_codes))),
                       "exit %d, %s\n%s%s" % (p.returncode, err, p.stdout.decode()[:600],
                                              p.stderr.decode()))
        return obj

    # -- go tool pprof -------------------------------------------------------
    def pprof_types(self, path):
        """Sample types as pprof -raw lists them (no protoc needed)."""
        lines = htlib.go_pprof(["-raw"], path).splitlines()
        i = lines.index("Samples:")
        return [t.split("/")[0] for t in lines[i + 1].split()]

    def pprof_rows(self, args, path):
        text = htlib.go_pprof(PPROF_TOP + list(args), path)
        rows, total, started = [], None, False
        for line in text.splitlines():
            m = re.search(r" of (-?\d+)\S* total", line)
            if m and not started:
                total = int(m.group(1))
            if re.match(r"\s*flat\s+flat%\s+sum%\s+cum\s+cum%", line):
                started = True
                continue
            if not started or not line.strip():
                continue
            m = ROW.match(line)
            if not m:
                rows.append(("<unparsed: %s>" % line, None, None))
                continue
            name = m.group(3)
            if INLINE.search(name):
                self.inline_labels += 1
                name = INLINE.sub("", name)
            rows.append((name, int(m.group(1)), int(m.group(2))))
        return rows, total, text

    # -- comparisons ---------------------------------------------------------
    def compare(self, label, hargs, pargs, path, check_total=True):
        """heaptap HARGS --json -n 1000 against go tool pprof -top PARGS PATH."""
        obj = self.json(list(hargs) + ["-n", "1000"], "heaptap " + label)
        if obj is None:
            return None
        rows = [(r["name"], r["flat"], r["cum"]) for r in obj["rows"]]
        ints = all(isinstance(v, int) for _, f, c in rows for v in (f, c))
        prows, ptotal, text = self.pprof_rows(pargs, path)
        diffs = []
        for i in range(max(len(rows), len(prows))):
            a = rows[i] if i < len(rows) else None
            b = prows[i] if i < len(prows) else None
            if a != b:
                diffs.append("row %d: heaptap %r, pprof %r" % (i, a, b))
        self.ctx.check(not diffs and ints,
                       "%s: %d rows match pprof -top (name, flat, cum, order)" % (label, len(prows)),
                       "%s\n%s" % ("\n".join(diffs[:12]) if diffs else "values not integers",
                                   text[-3000:]))
        if check_total:
            self.ctx.check(obj["total"] == ptotal, "%s: total %s == pprof's" % (label, ptotal),
                           "heaptap %r" % obj["total"])
        return obj

    def compare_top(self, path, label, pprof_extra=()):
        for st in self.pprof_types(path):
            obj = self.compare("top %s %s" % (label, st), ["top", path, "--sample", st],
                               ["-sample_index=" + st] + list(pprof_extra), path)
            if obj is not None:
                self.ctx.check(obj["sample"] == st, "top %s %s: JSON names the sample type" % (
                    label, st), "got %r" % obj["sample"])

    def compare_diff(self, base, path, label, pprof_extra=()):
        for st in self.pprof_types(path):
            # pprof's total for a diff is the base's (its percentages are of the
            # base); heaptap's is the new file's, the same as `top FILE`.
            obj = self.compare("diff %s %s" % (label, st), ["diff", base, path, "--sample", st],
                               ["-sample_index=" + st, "-diff_base", base] + list(pprof_extra),
                               path, check_total=False)
            top = self.json(["top", path, "--sample", st], "top (diff %s %s)" % (label, st))
            if obj is not None and top is not None:
                self.ctx.check(obj["total"] == top["total"],
                               "diff %s %s: total is the new file's" % (label, st),
                               "diff %r, top %r" % (obj["total"], top["total"]))


def run_examples(ctx):
    """Heap and thread profiles from the examples; {label: [(heap, threads)...]}."""
    specs = [
        ("leaky_server-rate1", "leaky_server", ["--requests", "400", "--idle", "0", "--dump"],
         {"HEAPTAP_RATE": "1"}),
        ("leaky_server-default", "leaky_server", ["--requests", "3000", "--idle", "0", "--dump"],
         {}),
        ("entry_points-rate1", "entry_points", [], {"HEAPTAP_RATE": "1"}),
        ("cxx_new-rate1", "cxx_new", [], {"HEAPTAP_RATE": "1"}),
        ("thread_leak-rate1", "thread_leak", [], {"HEAPTAP_RATE": "1"}),
    ]
    runs = [(label, ctx.start([ctx.example(prog)] + args, env=env)) for label, prog, args, env in specs]
    unjoined = None
    if ctx.builddir and os.path.exists(os.path.join(ctx.builddir, "tests/reliability/rel_unjoined")):
        unjoined = ctx.start([os.path.join(ctx.builddir, "tests/reliability/rel_unjoined")])
        runs.append(("rel_unjoined", unjoined))
    else:
        ctx.note("rel_unjoined not built: no unjoined threads to read")
    out = {}
    for label, r in runs:
        r.wait(120)
        files = sorted(f for f in os.listdir(r.outdir) if f.startswith("heaptap.%d." % r.pid))
        pairs = []
        seq = 1
        while os.path.exists(r.profile_path(seq, "heap")):
            pairs.append((r.profile_path(seq, "heap"), r.profile_path(seq, "threads")))
            seq += 1
        ctx.check(r.returncode == 0 and pairs, "%s ran and dumped (%d dumps)" % (label, len(pairs)),
                  "%s\n%s" % (files, r.transcript(20)))
        out[label] = (r, pairs)
    return out


def check_threads(ctx, rd, runs):
    r, pairs = runs["thread_leak-rate1"]
    want = {}
    for line in r.stdout_lines:
        m = re.match(r"dump (\d+) rc=0 handlers=(\d+) pool=(\d+) main=1", line)
        if m:
            want[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    ctx.check(len(want) == len(pairs) and want, "thread_leak printed one line per dump",
              "%s vs %d dumps" % (want, len(pairs)))
    sets = [(pairs, want)]
    if "rel_unjoined" in runs:
        sets.append((runs["rel_unjoined"][1][:1], None))
    for prs, exp in sets:
        for seq, (_, thr) in enumerate(prs, 1):
            name = os.path.basename(thr)
            obj = rd.json(["threads", thr, "-n", "1000"], "threads " + name)
            if obj is None:
                continue
            rows = obj["rows"]
            ctx.check(obj["total"] == sum(x["count"] for x in rows)
                      and obj["total"] == obj["running"] + obj["unjoined"],
                      "threads %s: total %s = sum of rows = running + unjoined" % (name, obj["total"]),
                      json.dumps(obj)[:800])
            ctx.check(all(x["running"] + x["unjoined"] == x["count"] for x in rows),
                      "threads %s: running + unjoined == count in every row" % name,
                      json.dumps(rows)[:800])
            by_leaf = {}
            for x in rows:
                leaf = x["frames"][0] if x["frames"] else ""
                by_leaf[leaf] = by_leaf.get(leaf, 0) + x["count"]
            if exp is not None:
                handlers, pool = exp.get(seq, (None, None))
                got = (by_leaf.get("spawn_handler", 0), by_leaf.get("start_pool", 0))
                ctx.check(got == (handlers, pool) and obj["total"] == handlers + pool + 1,
                          "threads %s: spawn_handler %s, start_pool %s, total = those + main"
                          % (name, handlers, pool), "got %s, rows %s" % (got, by_leaf))
            else:
                unj = [x for x in rows if x["frames"] and x["frames"][0] == "spawn_unjoined"]
                run = [x for x in rows if x["frames"] and x["frames"][0] == "spawn_running"]
                ctx.check(len(unj) == 1 and unj[0]["unjoined"] == 5 and unj[0]["running"] == 0
                          and len(run) == 1 and run[0]["running"] == 3 and run[0]["unjoined"] == 0,
                          "threads %s: spawn_unjoined 5 unjoined, spawn_running 3 running" % name,
                          json.dumps(rows)[:800])


def check_bad_files(ctx, rd, good_heap):
    d = ctx.tmpdir("bad")
    data = open(good_heap, "rb").read()
    rnd = random.Random(20261201)
    bad = {
        "truncated.pb.gz": data[:len(data) // 2],
        "garbage.pb.gz": b"this is not a profile\n" * 20,
        "random.pb.gz": gzip.compress(bytes(rnd.randrange(256) for _ in range(4096))),
        "empty.pb.gz": b"",
        "gzip-of-nothing.pb.gz": gzip.compress(b""),
        "json.pb.gz": gzip.compress(b'{"sample": "inuse_space", "total": 0, "rows": []}\n'),
    }
    paths = []
    for name, content in bad.items():
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(content)
        paths.append(p)
    paths.append(os.path.join(d, "missing.pb.gz"))
    os.mkdir(os.path.join(d, "a-directory.pb.gz"))
    paths.append(os.path.join(d, "a-directory.pb.gz"))
    bad_runs = 0
    for p in paths:
        for args in (["top", p], ["threads", p], ["diff", p, good_heap], ["diff", good_heap, p],
                     ["leaks", p], ["leaks", good_heap, p], ["top", p, "--json"]):
            r = rd.run(args)
            lines = r.stderr.decode("utf-8", "replace").splitlines()
            if not (r.returncode == 2 and r.stdout == b"" and len(lines) == 1
                    and lines[0].startswith("heaptap: ") and p in lines[0]):
                bad_runs += 1
                ctx.check(False, "heaptap %s %s: exit 2, one heaptap: line naming the file" % (
                    args[0], os.path.basename(p)),
                    "exit %d, stdout %r, stderr %r" % (r.returncode, r.stdout[:200], r.stderr[:400]))
    ctx.check(bad_runs == 0, "%d bad files x top/threads/diff/leaks: exit 2, one heaptap: line "
              "naming the file, empty stdout" % len(paths))


def check_go_testdata(ctx, rd):
    src = "/usr/share/gocode/src/github.com/google/pprof/profile/testdata"
    d = ctx.tmpdir("legacy")
    for name in ("gobench.heap", "cppbench.heap", "java.heap"):
        legacy = os.path.join(src, name)
        if not os.path.exists(legacy):
            ctx.note("%s not found (golang-github-google-pprof-dev): skipped" % legacy)
            continue
        out = os.path.join(d, name + ".pb.gz")
        p = subprocess.run(["go", "tool", "pprof", "-proto", "-output", out, legacy],
                           env=htlib.go_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        if not ctx.check(p.returncode == 0 and os.path.exists(out),
                         "go tool pprof -proto %s converts it" % name, p.stderr.decode()[-800:]):
            continue
        rd.compare_top(out, name)


def check_go_runtime(ctx, rd):
    d = ctx.tmpdir("goprog")
    with open(os.path.join(d, "main.go"), "w") as f:
        f.write(GO_PROGRAM)
    env = dict(htlib.go_env(), GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0")
    try:
        p = subprocess.run(["go", "build", "-o", "goheap", "main.go"], cwd=d, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
        ok = p.returncode == 0
        why = p.stderr.decode()[-600:]
    except subprocess.TimeoutExpired:
        ok, why = False, "timed out"
    if not ok:
        ctx.note("go build of a runtime/pprof program failed; Go runtime profile checks skipped: "
                 + why)
        return
    g1, g2 = os.path.join(d, "go.1.heap.pb.gz"), os.path.join(d, "go.2.heap.pb.gz")
    p = subprocess.run([os.path.join(d, "goheap"), g1, g2], cwd=d, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if not ctx.check(p.returncode == 0 and os.path.exists(g2), "Go program wrote two heap profiles",
                     p.stderr.decode()[-800:]):
        return
    for g in (g1, g2):
        rd.compare_top(g, os.path.basename(g))
        obj = rd.json(["top", g], "top " + os.path.basename(g))
        if obj is not None:
            names = [x["name"] for x in obj["rows"]]
            ctx.check("main.allocSmall" in names and "main.allocLarge" in names,
                      "top %s: main.allocSmall and main.allocLarge present" % os.path.basename(g),
                      str(names[:10]))
            ctx.check(obj["process"] is None, "top of a Go profile: no process figures (null)",
                      repr(obj["process"]))
    rd.compare_diff(g1, g2, "go.1 go.2")
    r = rd.run(["leaks", g1, g2])
    out = r.stdout.decode()
    ctx.check(r.returncode in (0, 1) and "no process figures" in out,
              "heaptap leaks on two Go profiles: exit 0/1 and the 'no process figures' note",
              "exit %d\n%s%s" % (r.returncode, out, r.stderr.decode()))
    obj = rd.json(["leaks", g1, g2], "leaks (Go profiles)", ok_codes=(0, 1))
    if obj is not None:
        ctx.check(all(k in obj for k in ("verdicts", "stacks", "threads")),
                  "leaks --json (Go): verdicts, stacks, threads", str(list(obj)))


def body(ctx):
    cli = ctx.args.cli
    if not cli or not os.path.exists(cli):
        raise htlib.Failure("heaptap command not built: %s" % cli)
    rd = Reader(ctx)
    runs = run_examples(ctx)
    heap_r1 = runs["leaky_server-rate1"][1][0][0]

    # Reading needs no Go: thread counts, bad files, --json of every reader.
    check_threads(ctx, rd, runs)
    check_bad_files(ctx, rd, heap_r1)
    tl = runs["thread_leak-rate1"][1]
    series = [h for h, _ in tl] + [t for _, t in tl]
    obj = rd.json(["diff", tl[0][0], tl[-1][0]], "diff (thread_leak heap 1 -> last)")
    if obj is not None:
        ctx.check(all(k in obj for k in ("rows", "stacks", "total", "sample")),
                  "diff --json has rows, stacks, total, sample", str(list(obj)))
    obj = rd.json(["leaks"] + series, "leaks (thread_leak series)", ok_codes=(0, 1))
    if obj is not None:
        ctx.check(all(k in obj for k in ("verdicts", "stacks", "threads")),
                  "leaks --json has verdicts, stacks, threads", str(list(obj)))
    for args, what in ((["top", heap_r1], "top"), (["threads", tl[-1][1]], "threads"),
                       (["diff", tl[0][0], tl[-1][0]], "diff")):
        r = rd.run(args)
        ctx.check(r.returncode == 0 and r.stdout and not r.stderr,
                  "heaptap %s (text) exits 0 with output and no stderr" % what,
                  "exit %d: %s" % (r.returncode, r.stderr.decode()))

    if not htlib.have_go_pprof():
        ctx.note("go tool pprof not available: the comparisons with pprof are skipped")
        return

    # top: heaptap's profiles, every sample type.
    for label in ("leaky_server-rate1", "leaky_server-default", "entry_points-rate1",
                  "thread_leak-rate1"):
        r, pairs = runs[label]
        picks = pairs if len(pairs) <= 2 else [pairs[0], pairs[len(pairs) // 2], pairs[-1]]
        for heap, thr in picks:
            rd.compare_top(heap, "%s %s" % (label, os.path.basename(heap)))
            rd.compare_top(thr, "%s %s" % (label, os.path.basename(thr)))
    if "rel_unjoined" in runs:
        thr = runs["rel_unjoined"][1][0][1]
        rd.compare_top(thr, "rel_unjoined " + os.path.basename(thr))

    # C++: the same rows once pprof leaves the names alone; by default pprof
    # demangles them, and that is the only difference.
    cxx = runs["cxx_new-rate1"][1][0][0]
    rd.compare_top(cxx, "cxx_new (pprof -symbolize=none)", ["-symbolize=none"])
    for st in rd.pprof_types(cxx):
        obj = rd.json(["top", cxx, "--sample", st, "-n", "1000"], "top cxx_new " + st)
        if obj is None:
            continue
        hrows = [(x["name"], x["flat"], x["cum"]) for x in obj["rows"]]
        prows, _, _ = rd.pprof_rows(["-sample_index=" + st], cxx)
        values_same = sorted((f, c) for _, f, c in hrows) == sorted((f, c) for _, f, c in prows)
        only_ht = sorted(set(n for n, _, _ in hrows) - set(n for n, _, _ in prows))
        only_pp = sorted(set(n for n, _, _ in prows) - set(n for n, _, _ in hrows))
        ctx.check(values_same and all(n.startswith("_Z") for n in only_ht)
                  and not any(n.startswith("_Z") for n in only_pp) and len(only_ht) == len(only_pp),
                  "cxx_new %s: default pprof differs only by demangling (%d names)"
                  % (st, len(only_ht)), "heaptap only %s\npprof only %s" % (only_ht, only_pp))
        if st == "inuse_space" and only_ht:
            ctx.note("pprof demangles, heaptap prints the profile's names: heaptap %s; pprof %s"
                     % (", ".join(only_ht[:3]), ", ".join(only_pp[:3])))

    # diff against pprof -diff_base.
    lr1, ldf = runs["leaky_server-rate1"][1][0][0], runs["leaky_server-default"][1][0][0]
    rd.compare_diff(lr1, ldf, "leaky_server rate1 -> default")
    rd.compare_diff(tl[0][0], tl[-1][0], "thread_leak heap 1 -> last")
    rd.compare_diff(tl[0][1], tl[-1][1], "thread_leak threads 1 -> last")
    rd.compare_diff(tl[-1][1], tl[0][1], "thread_leak threads last -> 1")
    ep = runs["entry_points-rate1"][1][0][0]
    rd.compare_diff(ep, cxx, "entry_points -> cxx_new (-symbolize=none)", ["-symbolize=none"])

    # Go's own heap profiles.
    check_go_testdata(ctx, rd)
    check_go_runtime(ctx, rd)
    if rd.inline_labels:
        ctx.note("%d pprof rows carried an (inline) label, stripped before comparing"
                 % rd.inline_labels)


if __name__ == "__main__":
    htlib.main(body, __doc__)
