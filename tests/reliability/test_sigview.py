#!/usr/bin/env python3
"""reliability.sigview - heaptap's handler is invisible, and every dump
trigger is answered within a second (issue 10).

  1. SIG_DFL seen: with heaptap's handler on SIGUSR2, the program asks
     through sigaction(sig, NULL, &old) and sets SIG_DFL through sigaction,
     signal, sigset, bsd_signal and sysv_signal (glibc implements the last
     three with its internal __sigaction, out of an interposer's reach):
     every answer is SIG_DFL, as without heaptap. heaptap's handler stays:
     SIGUSR2 then dumps (a pair within 3 s) and the process lives on. Once
     more for SIGUSR1 with HEAPTAP_SIGNAL=USR1.
  2. The program's own handler (through each of the five) or SIG_IGN
     (sigaction, signal) wins: the old value it gets back is SIG_DFL, the
     signal runs its handler (or nothing), no dump within 1.5 s, and heaptap
     says once, in one "heaptap:" line naming the signal, that it leaves the
     signal alone. When the program restores SIG_DFL (through the same
     call), the answers are as without heaptap, heaptap's handler comes
     back: the next SIGUSR2 dumps, the process lives on and its handler
     does not run again.
  3. sigset(SIGUSR2, SIG_HOLD) returns SIG_DFL, as without heaptap.
  4. An idle program answers: single-threaded, having allocated 300 bytes,
     in pause() or a sleep loop, it gets SIGUSR2 and must write a complete
     pair within a second (checked against 3 s on a loaded machine; the
     latency is printed), twice; also with HEAPTAP_RATE=0 (threads only),
     with HEAPTAP_SIGNAL=USR1 and SIGUSR1, and in a forked idle child
     (signalled by its own pid: the pair carries the child's pid).
  5. HEAPTAP_SIGNAL=none: no thread named heaptap-* exists (single-threaded
     and with a thread of the program's own, at rate 1), SIGUSR2 kills the
     program as without heaptap, nothing is written.
Every baseline run (no heaptap) must give the same answers.
"""
import os
import signal
import time

import rlib
from rlib import Failure, Proc, check_outdir, thread_names

HOWS = ["sigaction", "signal", "sigset", "bsd_signal", "sysv_signal"]
ANSWER = 1.0  # a dump must be written within this (required)
BOUND = 3.0  # ... checked against this, for a loaded machine
QUIET = 1.5  # no dump may appear within this after a signal heaptap leaves alone
SIGS = {"USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2}


def pair_paths(d, pid, seq):
    return [rlib.htlib.profile_path(d, pid, seq, k) for k in ("heap", "threads")]


def wait_pair(d, pid, seq, timeout, proc=None):
    """Seconds until both files of dump seq of pid are there, or None."""
    t0 = time.monotonic()
    paths = pair_paths(d, pid, seq)
    while time.monotonic() - t0 < timeout:
        if all(os.path.exists(p) for p in paths):
            return time.monotonic() - t0
        if proc is not None and proc.proc.poll() is not None:
            return None
        time.sleep(0.01)
    return None


def heaptap_threads(pid):
    return sorted(n for n in thread_names(pid).values() if n.startswith("heaptap"))


def start(ctx, prog, args, preload, env=None, tag="sigview"):
    d = ctx.tmpdir(tag)
    p = Proc(ctx, [prog] + args, outdir=d, env=env, preload=preload, stdin=True)
    return p, d


def finish(ctx, p):
    p.close_stdin()
    p.wait(30)
    return p.values()


def baseline(ctx, prog, args, signal_first=None):
    """The same mode without heaptap: what every answer must equal."""
    p, _ = start(ctx, prog, args, preload=False, tag="sigview-base")
    p.wait_line(r"^ready", 20)
    if signal_first is not None:
        p.send(signal_first)
        time.sleep(0.3)
        p.say("restore")
        p.wait_line(r"^ready2", 20)
    v = finish(ctx, p)
    if p.returncode != 0:
        raise Failure("baseline %s failed\n%s" % (" ".join(args), p.transcript()))
    return v


def part_dfl(ctx, prog, how, signame="USR2"):
    sig = SIGS[signame]
    args = (["--sig=" + signame] if signame != "USR2" else []) + ["dfl", how]
    env = {"HEAPTAP_SIGNAL": signame} if signame != "USR2" else {}
    tag = "SIG_DFL through %s (SIG%s)" % (how, signame)
    base = baseline(ctx, prog, args)
    p, d = start(ctx, prog, args, True, env)
    p.wait_line(r"^ready", 20)
    v = p.values()
    for key in ("query", "old", "after"):
        ctx.check(v.get(key) == base.get(key) == "dfl",
                  "%s: %s=%s, as without heaptap" % (tag, key, base.get(key)),
                  "got %s=%s" % (key, v.get(key)))
    if v.get("query_flags") != base.get("query_flags"):
        ctx.note("%s: sigaction's old sa_flags %s (without heaptap %s)" % (
            tag, v.get("query_flags"), base.get("query_flags")))
    p.send(sig)
    took = wait_pair(d, p.pid, 1, BOUND, p)
    alive = p.proc.poll() is None
    ctx.check(took is not None and alive,
              "%s: heaptap's handler stays, SIG%s dumps (%s) and the process lives on" % (
                  tag, signame, "%.0f ms" % (took * 1000) if took is not None else "no dump"),
              "exit %s, files %s" % (p.proc.poll(), sorted(os.listdir(d))))
    v = finish(ctx, p)
    ctx.check(p.returncode == 0 and v.get("alive") == "1" and v.get("after_all") == "dfl",
              "%s: the program ends normally, still seeing SIG_DFL" % tag, p.transcript())
    check_outdir(ctx, d, tag + ": ")


def part_own(ctx, prog, how, ign):
    sig = signal.SIGUSR2
    what = "SIG_IGN" if ign else "its own handler"
    tag = "%s through %s" % (what, how)
    args = ["own", how, "ign" if ign else "handler"]
    base = baseline(ctx, prog, args, signal_first=sig)
    p, d = start(ctx, prog, args, True)
    p.wait_line(r"^ready", 20)
    v = p.values()
    ctx.check(v.get("old") == base.get("old") == "dfl",
              "%s: the old disposition returned is SIG_DFL, as without heaptap" % tag,
              "got old=%s" % v.get("old"))
    ctx.check(v.get("query") == base.get("query"),
              "%s: query=%s, as without heaptap" % (tag, base.get("query")),
              "got query=%s" % v.get("query"))
    t0 = time.monotonic()
    p.send(sig)
    if not ign:
        p.wait_line(r"^handled=1", 10)
    time.sleep(max(0.0, QUIET - (time.monotonic() - t0)))
    finals, tmps, _ = rlib.list_outdir(d)
    ctx.check(p.proc.poll() is None and not finals and not tmps,
              "%s: SIGUSR2 %s, no dump" % (tag, "ignored" if ign else "runs the handler"),
              "exit %s, files %s" % (p.proc.poll(), sorted(os.listdir(d))))
    hl = p.heaptap_lines()
    ctx.check(len(hl) == 1 and "SIGUSR2" in hl[0],
              "%s: one heaptap: line, naming SIGUSR2" % tag, str(hl))
    if p.proc.poll() is not None:
        p.wait(10)
        ctx.check(False, "%s: the program lives to restore SIG_DFL" % tag, p.transcript())
        return
    p.say("restore")
    p.wait_line(r"^ready2", 20)
    v = p.values()
    want_count = "0" if ign else "1"
    ctx.check(v.get("count") == want_count, "%s: the program's handler ran %s time(s)" % (
        tag, want_count), "count=%s" % v.get("count"))
    ctx.check(v.get("restored_old") == base.get("restored_old"),
              "%s: restoring SIG_DFL returns %s, as without heaptap" % (
                  tag, base.get("restored_old")), "got %s" % v.get("restored_old"))
    ctx.check(v.get("after") == base.get("after") == "dfl",
              "%s: after restoring, query=dfl" % tag, "got after=%s" % v.get("after"))
    p.send(sig)
    took = wait_pair(d, p.pid, 1, BOUND, p)
    alive = p.proc.poll() is None
    ctx.check(took is not None and alive,
              "%s: SIG_DFL restored: heaptap's handler is back, SIGUSR2 dumps (%s), the "
              "process lives on" % (tag, "%.0f ms" % (took * 1000) if took is not None
                                     else "no dump"),
              "exit %s, files %s" % (p.proc.poll(), sorted(os.listdir(d))))
    v = finish(ctx, p)
    ctx.check(p.returncode == 0 and v.get("alive") == "1" and v.get("count") == want_count,
              "%s: ends normally, its handler not run by the last SIGUSR2" % tag,
              p.transcript())
    check_outdir(ctx, d, tag + ": ")


def part_hold(ctx, prog):
    b = rlib.run(ctx, [prog, "hold"], preload=False, outdir=ctx.tmpdir("sigview-base"),
                 timeout=20)
    h = rlib.run(ctx, [prog, "hold"], outdir=ctx.tmpdir("sigview"), timeout=20)
    bv, hv = b.values(), h.values()
    ctx.check(b.returncode == 0 and bv.get("old") == "dfl",
              "sigset(SIGUSR2, SIG_HOLD) without heaptap returns SIG_DFL", b.transcript())
    ctx.check(h.returncode == 0 and hv.get("old") == "dfl" and hv.get("query") == bv.get("query")
              and hv.get("blocked") == "1",
              "sigset(SIGUSR2, SIG_HOLD) under heaptap returns SIG_DFL, query=%s, SIGUSR2 "
              "blocked" % bv.get("query"), h.transcript())


def part_idle(ctx, prog, tag, args, env, signame="USR2"):
    sig = SIGS[signame]
    tag = "idle, " + tag
    p, d = start(ctx, prog, args, True, env, tag="sigview-idle")
    m = p.wait_line(r"^ready pid=(\d+)(?: child=(\d+))?", 20)
    target = int(m.group(2)) if m.group(2) else p.pid
    time.sleep(0.3)  # idle for sure: in pause() or its sleep
    ctx.note("%s: heaptap threads before the signal: %s" % (tag, heaptap_threads(target)))
    for seq in (1, 2):
        t0 = time.monotonic()
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass
        took = wait_pair(d, target, seq, BOUND, p)
        ctx.check(took is not None and took < BOUND,
                  "%s: SIG%s #%d answered with a complete pair in %s (required %.0f s)" % (
                      tag, signame, seq, "%.0f ms" % (took * 1000) if took is not None
                      else "-", ANSWER),
                  "no pair %d of pid %d after %.1fs; exit %s, files %s" % (
                      seq, target, time.monotonic() - t0, p.proc.poll(),
                      sorted(os.listdir(d))))
        if took is None:
            break
        if took > ANSWER:
            ctx.note("%s: %.0f ms is over the required %.0f s (allowed here for load)" % (
                tag, took * 1000, ANSWER))
        time.sleep(0.2)
    ctx.note("%s: heaptap threads after: %s" % (tag, heaptap_threads(target)))
    try:
        os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        pass  # already gone (and reaped by its parent): the checks below say how
    p.wait(20)
    v = p.values()
    if target != p.pid:
        ctx.check(p.returncode == 0 and v.get("child_signal") == str(int(signal.SIGTERM)),
                  "%s: the child dies of SIGTERM, the parent goes on" % tag, p.transcript())
    else:
        ctx.check(p.returncode == -signal.SIGTERM, "%s: SIGTERM ends it" % tag, p.transcript())
    ctx.check(not p.heaptap_lines(), "%s: heaptap says nothing" % tag,
              str(p.heaptap_lines()[:3]))
    finals = check_outdir(ctx, d, tag + ": ", allow_tmp=True)
    others = sorted(k for k in finals if k[0] != target)
    ctx.check(not others, "%s: only the signalled process dumps" % tag, str(others))


def part_none(ctx, prog, tag, args, env, preload=True):
    p, d = start(ctx, prog, args, preload, env, tag="sigview-none")
    m = p.wait_line(r"^ready pid=(\d+) threads=(\d+)", 20)
    time.sleep(0.5)
    names = thread_names(p.pid)
    want_threads = int(m.group(2))
    ctx.check(not [n for n in names.values() if n.startswith("heaptap")] and
              len(names) == want_threads,
              "%s: no heaptap thread (%d thread(s), as the program made)" % (tag, want_threads),
              str(names))
    p.send(signal.SIGUSR2)
    p.wait(20)
    ctx.check(p.returncode == -signal.SIGUSR2,
              "%s: SIGUSR2 kills it, as without heaptap" % tag, p.transcript())
    finals, tmps, _ = rlib.list_outdir(d)
    ctx.check(not finals and not tmps, "%s: nothing written" % tag, str(sorted(os.listdir(d))))


def guarded(ctx, label, fn, *args):
    """Run one part; a part that cannot go on (a line that never comes, a
    hang) is one failed check, and the other parts still run."""
    try:
        fn(ctx, *args)
    except Failure as e:
        ctx.check(False, "%s: runs to the end" % label, str(e))


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_sigview")

    # 1. SIG_DFL, asked and set
    for how in HOWS:
        guarded(ctx, "SIG_DFL through " + how, part_dfl, prog, how)
    guarded(ctx, "SIG_DFL through sigaction (SIGUSR1)", part_dfl, prog, "sigaction", "USR1")

    # 2. the program's own handler, then SIG_DFL back
    for how in HOWS:
        guarded(ctx, "its own handler through " + how, part_own, prog, how, False)
    for how in ("sigaction", "signal"):
        guarded(ctx, "SIG_IGN through " + how, part_own, prog, how, True)

    # 3. SIG_HOLD
    guarded(ctx, "SIG_HOLD", part_hold, prog)

    # 4. an idle program answers
    for tag, args, env, signame in [
            ("single-threaded, pause()", ["idle", "pause"], {}, "USR2"),
            ("single-threaded, sleep loop", ["idle", "sleep"], {}, "USR2"),
            ("single-threaded, HEAPTAP_RATE=0", ["idle", "pause"], {"HEAPTAP_RATE": "0"},
             "USR2"),
            ("single-threaded, HEAPTAP_SIGNAL=USR1", ["--sig=USR1", "idle", "sleep"],
             {"HEAPTAP_SIGNAL": "USR1"}, "USR1"),
            ("forked child", ["idle", "pause", "fork"], {}, "USR2")]:
        guarded(ctx, "idle, " + tag, part_idle, prog, tag, args, env, signame)

    # 5. HEAPTAP_SIGNAL=none
    for tag, args, env, preload in [
            ("no heaptap (baseline)", ["idle", "pause"], {}, False),
            ("HEAPTAP_SIGNAL=none, single-threaded", ["idle", "pause"],
             {"HEAPTAP_SIGNAL": "none"}, True),
            ("HEAPTAP_SIGNAL=none, a thread of its own, rate 1", ["idle", "pause", "thread"],
             {"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "1"}, True)]:
        guarded(ctx, tag, part_none, prog, tag, args, env, preload)


if __name__ == "__main__":
    rlib.main(body, __doc__)
