#!/usr/bin/env python3
"""heaptap leaks FILE... - verdicts on series of dumps from the tests/leaks programs.

Each program of tests/leaks plays one memory story (a steady leak, a leak
under load only, a capped cache, a warm-up table, a sawtooth with and without
a staircase under it, glibc retention with and without malloc_trim, a thread
leak, two leaks at 10:1, a leak under the detection floor) beside background
sites that must never be blamed (churn_*, pool_*). The driver runs a program
under heaptap with HEAPTAP_INTERVAL=200ms, at the default rate and at
HEAPTAP_RATE=1, and then:

1. checks the program's own picture in the dumps (decoded with protoc), so a
   wrong verdict can be told from a test subject that did not do its part:
   the leak site grows, the churn is flat, the cache caps, RSS stays up while
   the live heap falls, the thread counts climb... (checks named "subject:");
2. runs `heaptap leaks --json` and `heaptap leaks` on all the heap dumps of
   that pid and checks the exit code (1 when the verdicts hold leak or
   thread_leak, else 0), the verdicts, the classes and ranking of the stacks
   and threads, and that the plain text names the leak site.

  test_leaks.py --lib L --bindir DIR --cli heaptap --program NAME [--scale F]

--bindir is the directory of the built tests/leaks programs. Without
--program every program runs (minutes); ctest runs one program per test
(integration.leaks.<program>). When the CLI has no `leaks` subcommand yet, the
subject checks still run and the test is skipped (77) if they pass.

The programs pace themselves by wall time (about 5-6 s each, 20-25 dumps on
an idle machine). On a machine so busy that heaptap's periodic dumps come
late and a run yields fewer than 12 dumps, the run is made once more with
--scale doubled; fewer than 8 dumps fails.
"""
import argparse
import glob
import json
import os
import re
import subprocess

import htlib

MIB = 1 << 20
DEFAULT = None  # the library's default rate (HEAPTAP_RATE unset)
VERDICTS = {"leak", "thread_leak", "retention", "levels_off", "no_leak"}
STACK_CLASSES = {"leaking", "levels_off", "transient", "warmup", "noise"}
BACKGROUND = re.compile(r"^(churn_|pool_|start_pool$)")


class Expect:
    """What `heaptap leaks` must say about one run.

    verdicts_has / verdicts_not: verdict strings that must / must not be there.
    leaking: sites (frames[0]) that must be class leaking, in rank order.
    rank1: the site that must be stacks[0].
    classes: {site: allowed classes} for sites that must be listed.
    not_leaking: sites that must never be class leaking (absent is fine).
    thread_leaking / thread_not_leaking: the same for `threads`.
    text: words the plain output must contain (case-insensitive)."""

    def __init__(self, verdicts_has=(), verdicts_not=(), leaking=(), rank1=None, classes=None,
                 not_leaking=(), thread_leaking=(), thread_not_leaking=(), text=()):
        self.verdicts_has = set(verdicts_has)
        self.verdicts_not = set(verdicts_not)
        self.leaking = list(leaking)
        self.rank1 = rank1
        self.classes = dict(classes or {})
        self.not_leaking = list(not_leaking)
        self.thread_leaking = list(thread_leaking)
        self.thread_not_leaking = list(thread_not_leaking)
        self.text = list(text)


class Case:
    def __init__(self, rate, args, expect, picture):
        self.rate = rate
        self.args = list(args)
        self.expect = expect
        self.picture = picture  # function(ctx, series, tag, run, exact)


# ---------------------------------------------------------------------------
# The series of one run, decoded.

class Series:
    def __init__(self, ctx, paths):
        self.heaps = [ctx.decode(p) for p in paths]
        self.threads = []
        for p in paths:
            t = p.replace(".heap.pb.gz", ".threads.pb.gz")
            self.threads.append(ctx.decode(t) if os.path.exists(t) else None)
        self.figs = [h.figures() for h in self.heaps]
        self.n = len(self.heaps)

    def site(self, fn, kind="inuse_space"):
        """inuse bytes per dump of the samples whose leaf is fn."""
        return [h.leaf_total(kind, fn) for h in self.heaps]

    def fig(self, key):
        return [f.get(key, 0) for f in self.figs]

    def app_rss(self):
        """RSS less heaptap's own resident memory, when the comments give it."""
        return [f.get("rss_bytes", 0) - f.get("heaptap_resident_bytes", 0) for f in self.figs]

    def threads_at(self, fn, state=None):
        out = []
        for t in self.threads:
            n = 0
            for s in (t.samples if t else []):
                st = t.stack(s)
                if st and htlib.fn_matches(st[0], fn) and (
                        state is None or state in s["labels"].get("state", [])):
                    n += s["values"][0]
            out.append(n)
        return out


def mib(v):
    return "%.1f" % (v / MIB)


def fmt_series(vals, scale=MIB, limit=30):
    if len(vals) > limit:
        step = len(vals) / float(limit)
        vals = [vals[int(i * step)] for i in range(limit)] + [vals[-1]]
    return " ".join(("%.1f" % (v / scale)) if scale != 1 else str(v) for v in vals)


def nondecreasing(vals, slack=0):
    return all(b >= a - slack for a, b in zip(vals, vals[1:]))


def spread(vals):
    return max(vals) - min(vals) if vals else 0


def check_background(ctx, s, tag, exact):
    """pool_init constant; the churn ring flat (exact only: at the default rate
    its estimate is sampling noise)."""
    pool = s.site("pool_init")
    if exact:
        ctx.check(spread(pool) == 0 and pool[0] > 0, tag + "subject: pool_init constant",
                  fmt_series(pool))
        ring = s.site("churn_ring")
        ctx.check(spread(ring) <= 256 << 10, tag + "subject: churn_ring flat (within 256 KiB)",
                  fmt_series(ring))


def printed(run, key):
    """A number from the program's summary line (key=value)."""
    for line in run.stdout_lines:
        m = re.search(r"\b%s=(\d+)" % re.escape(key), line)
        if m:
            return int(m.group(1))
    return None


# ---------------------------------------------------------------------------
# The programs: their subject pictures and what `heaptap leaks` must say.

def pic_leak_steady(ctx, s, tag, run, exact):
    check_background(ctx, s, tag, exact)
    leak = s.site("leak_here")
    ctx.note(tag + "leak_here MiB: " + fmt_series(leak))
    if exact:
        ctx.check(nondecreasing(leak) and leak[-1] - leak[0] >= 16 * MIB,
                  tag + "subject: leak_here grows steadily by >= 16 MiB", fmt_series(leak))
    else:
        ctx.check(leak[-1] - leak[0] >= 8 * MIB, tag + "subject: leak_here grows (sampled)",
                  fmt_series(leak))


def pic_leak_under_load(ctx, s, tag, run, exact):
    check_background(ctx, s, tag, exact)
    leak = s.site("leak_on_load")
    x = [h.total("alloc_space") for h in s.heaps]
    ctx.note(tag + "leak_on_load MiB: " + fmt_series(leak))
    ctx.note(tag + "alloc_space (load clock) MiB: " + fmt_series(x))
    if exact:
        ctx.check(leak[0] == 0 and leak[1] == 0, tag + "subject: nothing leaked while idle first",
                  fmt_series(leak))
        tail = 0
        while tail < s.n - 1 and leak[-1 - tail - 1] == leak[-1]:
            tail += 1
        ctx.check(tail >= 3 and leak[-1] >= 16 * MIB,
                  tag + "subject: >= 16 MiB leaked under load, then flat for >= 3 idle dumps",
                  "flat tail %d: %s" % (tail, fmt_series(leak)))
        dx = [b - a for a, b in zip(x, x[1:])]
        busy = sorted(dx)[len(dx) // 2]
        ctx.check(dx[-1] < 0.05 * busy and dx[-2] < 0.05 * busy,
                  tag + "subject: the idle dumps after the load allocate < 5% of a busy interval",
                  "deltas MiB: " + fmt_series(dx))


def pic_cache(ctx, s, tag, run, exact):
    check_background(ctx, s, tag, exact)
    c = s.site("cache_insert")
    ctx.note(tag + "cache_insert MiB: " + fmt_series(c))
    if exact:
        cap = 512 * MIB + (8 << 20)  # the cap counts values, not entry headers
        first_full = next((i for i, v in enumerate(c) if v >= 480 * MIB), None)
        ctx.check(max(c) <= cap, tag + "subject: cache_insert never above its 512 MiB cap (+ headers)",
                  fmt_series(c))
        ctx.check(first_full is not None and first_full <= s.n * 0.4,
                  tag + "subject: the cache is full within the first 40% of the dumps",
                  "full at dump %s of %d" % (first_full, s.n))
        late = c[s.n // 2:]
        ctx.check(spread(late) <= MIB, tag + "subject: cache_insert flat in the second half",
                  fmt_series(late))


def pic_warmup(ctx, s, tag, run, exact):
    check_background(ctx, s, tag, exact)
    t = s.site("build_table")
    ctx.note(tag + "build_table MiB: " + fmt_series(t))
    if exact:
        done = next((i for i, v in enumerate(t) if v == 64 * MIB), None)
        ctx.check(done is not None and done <= s.n * 0.25 and spread(t[done:]) == 0,
                  tag + "subject: the 64 MiB table is complete in the first 25% of the dumps "
                  "and constant after", fmt_series(t))


def saws(vals, high=8 * MIB):
    """Drops to half or less of a peak of >= high (a dump may land anywhere in a
    cycle, so the troughs seen are not all at zero)."""
    n, peak = 0, 0
    for v in vals:
        if v > peak:
            peak = v
        elif peak >= high and v <= peak / 2:
            n += 1
            peak = v
    return n


def pic_sawtooth(ctx, s, tag, run, exact, rising=False):
    check_background(ctx, s, tag, exact)
    b = s.site("batch_add")
    ctx.note(tag + "batch_add MiB: " + fmt_series(b))
    ctx.check(saws(b) >= 3, tag + "subject: batch_add saws (>= 3 drops to half a peak of >= 8 MiB)",
              fmt_series(b))
    if rising:
        k = s.site("keep_one")
        ctx.note(tag + "keep_one MiB: " + fmt_series(k))
        levels = len(set(k))
        if exact:
            ctx.check(nondecreasing(k) and levels >= 5 and k[-1] >= 32 * MIB,
                      tag + "subject: keep_one is a staircase of >= 5 levels up to >= 32 MiB",
                      fmt_series(k))
        else:
            ctx.check(nondecreasing(k) and levels >= 5 and k[-1] >= 32 * MIB,
                      tag + "subject: keep_one is a staircase of >= 5 levels up to >= 32 MiB "
                      "(8 MiB blocks: sampled at the default rate too)", fmt_series(k))


def pic_retention(ctx, s, tag, run, exact, trim=False):
    check_background(ctx, s, tag, exact)
    rss, app, held = s.fig("rss_bytes"), s.app_rss(), s.fig("malloc_free_held_bytes")
    live = s.fig("heap_live_estimate_bytes")
    fill = s.site("fill_arena")
    ctx.note(tag + "fill_arena MiB: " + fmt_series(fill))
    ctx.note(tag + "rss MiB: " + fmt_series(rss))
    ctx.note(tag + "rss - heaptap_resident MiB: " + fmt_series(app))
    ctx.note(tag + "heap_live_estimate MiB: " + fmt_series(live))
    ctx.note(tag + "malloc_free_held MiB: " + fmt_series(held))
    total = (printed(run, "workers") or 8) * (printed(run, "mib_per_worker") or 16) * MIB
    ctx.check(max(live) - live[0] >= 0.5 * total and live[-1] - live[0] <= 8 * MIB,
              tag + "subject: the live heap rises by ~%s MiB and falls back" % mib(total),
              fmt_series(live))
    ctx.check(held[-1] >= 0.9 * total,
              tag + "subject: glibc holds the freed %s MiB at the end (free_held)" % mib(total),
              fmt_series(held))
    if "heaptap_resident_bytes" in s.figs[-1]:
        if trim:
            ctx.check(app[-1] - app[0] <= 16 * MIB,
                      tag + "subject: with malloc_trim RSS (less heaptap's) falls back to "
                      "within 16 MiB of the start", fmt_series(app))
        else:
            ctx.check(app[-1] - app[0] >= 0.9 * total,
                      tag + "subject: RSS (less heaptap's) stays ~%s MiB up" % mib(total),
                      fmt_series(app))
    else:
        ctx.check(False, tag + "subject: comments carry heaptap_resident_bytes", str(s.figs[-1]))


def pic_threads(ctx, s, tag, run, exact, mode="both"):
    check_background(ctx, s, tag, exact)
    unj = s.threads_at("spawn_unjoined")
    stuck = s.threads_at("spawn_stuck")
    pool = s.threads_at("start_pool")
    helper = s.threads_at("churn_thread")
    ctx.note(tag + "spawn_unjoined: " + fmt_series(unj, 1))
    ctx.note(tag + "spawn_stuck: " + fmt_series(stuck, 1))
    ctx.note(tag + "start_pool: %s  churn_thread max %d" % (fmt_series(pool, 1), max(helper)))
    ctx.check(all(v == 4 for v in pool), tag + "subject: start_pool holds 4 threads throughout",
              fmt_series(pool, 1))
    ctx.check(max(helper) <= 1, tag + "subject: churn_thread leaves no threads behind",
              fmt_series(helper, 1))
    for fn, vals, on in (("spawn_unjoined", unj, mode in ("both", "unjoined")),
                         ("spawn_stuck", stuck, mode in ("both", "stuck"))):
        if on:
            ctx.check(nondecreasing(vals) and vals[-1] - vals[0] >= 10,
                      tag + "subject: %s threads climb by >= 10" % fn, fmt_series(vals, 1))
        else:
            ctx.check(max(vals) == 0, tag + "subject: no %s threads in mode %s" % (fn, mode),
                      fmt_series(vals, 1))
    if mode in ("both", "unjoined"):
        u = s.threads_at("spawn_unjoined", "unjoined")
        ctx.check(u[-1] >= 0.8 * unj[-1],
                  tag + "subject: spawn_unjoined's threads are counted state=unjoined",
                  "%d of %d" % (u[-1], unj[-1]))


def pic_two_leaks(ctx, s, tag, run, exact):
    check_background(ctx, s, tag, exact)
    big, small = s.site("leak_big"), s.site("leak_small")
    ctx.note(tag + "leak_big MiB: " + fmt_series(big))
    ctx.note(tag + "leak_small MiB: " + fmt_series(small))
    if exact:
        ctx.check(nondecreasing(big) and nondecreasing(small) and small[-1] >= 6 * MIB,
                  tag + "subject: both leaks grow, leak_small by >= 6 MiB",
                  "big %s / small %s" % (mib(big[-1]), mib(small[-1])))
        g_big, g_small = big[-1] - big[0], small[-1] - small[0]
        ctx.check(g_small > 0 and 7 <= g_big / g_small <= 14,
                  tag + "subject: growth ratio big:small about 10:1",
                  "%.1f : 1" % (g_big / g_small if g_small else float("inf")))


def pic_tiny(ctx, s, tag, run, exact):
    check_background(ctx, s, tag, exact)
    t = s.site("leak_tiny")
    ctx.note(tag + "leak_tiny MiB: " + fmt_series(t))
    if exact:
        ctx.check(nondecreasing(t) and 1.5 * MIB <= t[-1] <= 2.1 * MIB,
                  tag + "subject: leak_tiny grows steadily to ~2 MiB", fmt_series(t))


def leak_expect(*sites, rank1=None, extra_not=()):
    return Expect(verdicts_has={"leak"}, leaking=sites, rank1=rank1,
                  not_leaking=list(extra_not), text=sites)


NO_LEAK = dict(verdicts_not={"leak", "thread_leak"})


def programs():
    both = (DEFAULT, 1)
    p = {}

    p["leak_steady"] = [Case(r, [], leak_expect("leak_here", rank1="leak_here"), pic_leak_steady)
                        for r in both]
    p["leak_under_load"] = [
        Case(r, [], Expect(verdicts_has={"leak"}, verdicts_not={"levels_off"},
                           leaking=["leak_on_load"], rank1="leak_on_load",
                           text=["leak_on_load"]), pic_leak_under_load) for r in both]
    p["cache_levels_off"] = [
        Case(r, [], Expect(classes={"cache_insert": {"levels_off", "warmup"}}, **NO_LEAK),
             pic_cache) for r in both]
    p["warmup_only"] = [
        Case(r, [], Expect(classes={"build_table": {"warmup", "levels_off"}}, **NO_LEAK),
             pic_warmup) for r in both]
    p["sawtooth"] = [
        Case(r, [], Expect(not_leaking=["batch_add"], **NO_LEAK), pic_sawtooth) for r in both]
    p["sawtooth_rising"] = [
        Case(r, [], leak_expect("keep_one", extra_not=["batch_add"]),
             lambda c, s, t, run, e: pic_sawtooth(c, s, t, run, e, rising=True)) for r in both]
    p["retention_glibc"] = [
        Case(r, [], Expect(verdicts_has={"retention"}, not_leaking=["fill_arena"],
                           text=["retention"], **NO_LEAK), pic_retention) for r in both] + [
        Case(r, ["--trim"], Expect(verdicts_not={"leak", "thread_leak", "retention"},
                                   not_leaking=["fill_arena"]),
             lambda c, s, t, run, e: pic_retention(c, s, t, run, e, trim=True)) for r in both]
    thread_cases = []
    for rate, mode in ((DEFAULT, "both"), (1, "both"), (DEFAULT, "unjoined"), (DEFAULT, "stuck")):
        spawn = [f for f, m in (("spawn_unjoined", "unjoined"), ("spawn_stuck", "stuck"))
                 if mode in ("both", m)]
        thread_cases.append(Case(
            rate, ["--mode", mode],
            Expect(verdicts_has={"thread_leak"}, verdicts_not={"leak"}, thread_leaking=spawn,
                   thread_not_leaking=["start_pool", "churn_thread"], text=spawn),
            (lambda m: lambda c, s, t, run, e: pic_threads(c, s, t, run, e, mode=m))(mode)))
    p["thread_leak_series"] = thread_cases
    p["two_leaks"] = [Case(r, [], leak_expect("leak_big", "leak_small", rank1="leak_big"),
                           pic_two_leaks) for r in both]
    p["tiny_leak"] = [
        Case(DEFAULT, [], Expect(verdicts_not={"leak", "thread_leak"}, not_leaking=["leak_tiny"]),
             pic_tiny),
        Case(1, [], leak_expect("leak_tiny", rank1="leak_tiny"), pic_tiny),
    ]
    return p


# ---------------------------------------------------------------------------
# heaptap leaks

def leaks_available(cli):
    """True when the CLI has a `leaks` subcommand."""
    if not cli or not os.path.exists(cli):
        return False
    p = subprocess.run([cli, "leaks", "--help"], env=htlib.clean_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return p.returncode == 0


def first_frame(entry):
    frames = entry.get("frames") or []
    return frames[0] if frames else ""


def where(entries, fn):
    return [i for i, e in enumerate(entries) if htlib.fn_matches(first_frame(e), fn)]


def describe(entries, limit=8, key="growth_bytes"):
    out = []
    for i, e in enumerate(entries[:limit]):
        g = e.get(key)
        g = mib(g) + " MiB" if key == "growth_bytes" and isinstance(g, (int, float)) else str(g)
        out.append("#%d %-10s %10s  %s" % (i + 1, e.get("class"), g,
                                          " <- ".join((e.get("frames") or [])[:4])))
    if len(entries) > limit:
        out.append("... %d more" % (len(entries) - limit))
    return "\n".join(out)


def check_leaks(ctx, tag, cli, heaps, expect):
    env = htlib.clean_env()
    p = subprocess.run([cli, "leaks", "--json"] + heaps, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    try:
        doc = json.loads(out)
    except ValueError as e:
        ctx.check(False, tag + "leaks --json prints JSON",
                  "%s (exit %d)\nstdout: %s\nstderr: %s" % (e, p.returncode, out[:2000], err))
        return
    ctx.check(isinstance(doc, dict) and all(k in doc for k in ("verdicts", "stacks", "threads")),
              tag + "leaks --json has verdicts, stacks, threads", out[:2000])
    verdicts = doc.get("verdicts") or []
    stacks = doc.get("stacks") or []
    threads = doc.get("threads") or []
    ctx.note(tag + "verdicts: %s (exit %d)" % (verdicts, p.returncode))
    ctx.note(tag + "stacks:\n" + describe(stacks))
    if threads:
        ctx.note(tag + "threads:\n" + describe(threads, key="growth"))

    # Shape.
    ctx.check(isinstance(verdicts, list) and verdicts and set(verdicts) <= VERDICTS,
              tag + "verdicts are a non-empty list out of %s" % sorted(VERDICTS), str(verdicts))
    ctx.check(all(e.get("class") in STACK_CLASSES and isinstance(e.get("growth_bytes"), (int, float))
                  and isinstance(e.get("frames"), list) for e in stacks),
              tag + "stacks are {class, growth_bytes, frames}", json.dumps(stacks[:3]))
    ctx.check(all(isinstance(e.get("class"), str) and "growth" in e
                  and isinstance(e.get("frames"), list) for e in threads),
              tag + "threads are {class, growth, frames}", json.dumps(threads[:3]))
    finding = bool({"leak", "thread_leak"} & set(verdicts))
    ctx.check(p.returncode == (1 if finding else 0),
              tag + "exit %d for verdicts %s" % (1 if finding else 0, verdicts),
              "exit %d\nstderr: %s" % (p.returncode, err))

    # Ordering: leaking first, then by growth (descending) within each part.
    leaking_flags = [e.get("class") == "leaking" for e in stacks]
    ok_order = leaking_flags == sorted(leaking_flags, reverse=True)
    for part in (True, False):
        g = [e.get("growth_bytes", 0) for e, f in zip(stacks, leaking_flags) if f == part]
        ok_order = ok_order and all(a >= b for a, b in zip(g, g[1:]))
    ctx.check(ok_order, tag + "stacks ordered leaking first, then by growth_bytes", describe(stacks, 30))

    # Consistency between verdicts and classes.
    if "leak" in verdicts:
        ctx.check(any(leaking_flags), tag + "verdict leak comes with a leaking stack",
                  describe(stacks))
    if "thread_leak" in verdicts:
        ctx.check(any(e.get("class") == "leaking" for e in threads),
                  tag + "verdict thread_leak comes with a leaking thread stack",
                  describe(threads, key="growth"))

    # Background sites: never leaking.
    bad = [e for e in stacks + threads
           if e.get("class") == "leaking" and BACKGROUND.match(first_frame(e))]
    ctx.check(not bad, tag + "no churn_*/pool_*/start_pool site is class leaking",
              describe(bad, key="class"))

    # Expectations.
    for v in sorted(expect.verdicts_has):
        ctx.check(v in verdicts, tag + "verdicts contain %s" % v, str(verdicts))
    for v in sorted(expect.verdicts_not):
        ctx.check(v not in verdicts, tag + "verdicts do not contain %s" % v, str(verdicts))
    ranks = []
    for fn in expect.leaking:
        idx = [i for i in where(stacks, fn) if stacks[i].get("class") == "leaking"]
        ctx.check(idx, tag + "%s is class leaking" % fn, describe(stacks))
        ranks.append(min(idx) if idx else None)
    if len(expect.leaking) > 1 and None not in ranks:
        ctx.check(ranks == sorted(ranks),
                  tag + "leaking sites ranked %s" % " before ".join(expect.leaking),
                  describe(stacks))
    if expect.rank1:
        ctx.check(stacks and htlib.fn_matches(first_frame(stacks[0]), expect.rank1)
                  and stacks[0].get("class") == "leaking",
                  tag + "%s ranked #1 (class leaking)" % expect.rank1, describe(stacks))
    for fn, allowed in sorted(expect.classes.items()):
        idx = where(stacks, fn)
        got = sorted({stacks[i].get("class") for i in idx})
        ctx.check(idx and set(got) <= allowed,
                  tag + "%s listed as %s" % (fn, " or ".join(sorted(allowed))),
                  "got %s\n%s" % (got or "not listed", describe(stacks)))
    for fn in expect.not_leaking:
        idx = [i for i in where(stacks, fn) if stacks[i].get("class") == "leaking"]
        ctx.check(not idx, tag + "%s not class leaking" % fn, describe(stacks))
    for fn in expect.thread_leaking:
        idx = [i for i in where(threads, fn) if threads[i].get("class") == "leaking"]
        ctx.check(idx, tag + "threads: %s is class leaking" % fn, describe(threads, key="growth"))
    for fn in expect.thread_not_leaking:
        idx = [i for i in where(threads, fn) if threads[i].get("class") == "leaking"]
        ctx.check(not idx, tag + "threads: %s not class leaking" % fn,
                  describe(threads, key="growth"))

    # Plain output.
    p2 = subprocess.run([cli, "leaks"] + heaps, env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=300)
    text = p2.stdout.decode("utf-8", "replace")
    ctx.check(p2.returncode == p.returncode, tag + "plain leaks exits as --json does (%d)"
              % p.returncode, "exit %d\n%s" % (p2.returncode, p2.stderr.decode()))
    for word in expect.text:
        ctx.check(word.lower() in text.lower(), tag + "plain output mentions %s" % word, text[:3000])


# ---------------------------------------------------------------------------

MIN_DUMPS = 8      # fewer cannot be judged
WANT_DUMPS = 12    # fewer: the machine was too busy; run once more, twice as long


def run_once(ctx, prog, case, tag, scale):
    env = {"HEAPTAP_INTERVAL": "200ms"}
    if case.rate is not DEFAULT:
        env["HEAPTAP_RATE"] = str(case.rate)
    r = ctx.run([prog, "--scale", str(scale)] + case.args, env=env, timeout=120)
    ctx.check(r.returncode == 0 and r.stdout_lines and r.stdout_lines[-1].startswith("done"),
              tag + "runs to done", r.transcript())
    m = re.search(r"pid=(\d+)", r.stdout)
    pid = int(m.group(1)) if m else r.pid
    heaps = sorted(glob.glob(os.path.join(r.outdir, "heaptap.%d.*.heap.pb.gz" % pid)))
    ctx.note(tag + "%d dumps in %.1f s (--scale %g)" % (len(heaps), r.elapsed or 0, scale))
    return r, heaps


def run_case(ctx, name, case, have_cli, scale):
    prog = ctx.example(name)
    rate_txt = "default rate" if case.rate is DEFAULT else "HEAPTAP_RATE=%d" % case.rate
    tag = "%s %s%s: " % (name, rate_txt, (" " + " ".join(case.args)) if case.args else "")
    r, heaps = run_once(ctx, prog, case, tag, scale)
    if len(heaps) < WANT_DUMPS:
        ctx.note(tag + "fewer than %d dumps (a busy machine?): once more, twice as long"
                 % WANT_DUMPS)
        r, heaps = run_once(ctx, prog, case, tag, scale * 2)
    if not ctx.check(len(heaps) >= MIN_DUMPS, tag + "subject: at least %d dumps" % MIN_DUMPS,
                     "%d dumps" % len(heaps)):
        return
    s = Series(ctx, heaps)
    case.picture(ctx, s, tag, r, case.rate == 1)
    if have_cli:
        check_leaks(ctx, tag, ctx.args.cli, heaps, case.expect)


def body(ctx):
    ctx.need_protoc()
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", action="append", default=[])
    ap.add_argument("--scale", type=float, default=1.0)
    opts, _ = ap.parse_known_args()
    table = programs()
    names = opts.program or list(table)
    for n in names:
        if n not in table:
            raise htlib.Failure("unknown --program %s (have %s)" % (n, ", ".join(table)))
    have_cli = leaks_available(ctx.args.cli)
    if not have_cli:
        ctx.note("`%s leaks` is not available: subject checks only" % ctx.args.cli)
    for n in names:
        for case in table[n]:
            run_case(ctx, n, case, have_cli, opts.scale)
    if not have_cli and not ctx.failures:
        raise htlib.Skip("heaptap leaks not available (%s); the programs' own pictures pass"
                         % ctx.args.cli)


if __name__ == "__main__":
    htlib.main(body, __doc__)
