#!/usr/bin/env python3
"""reliability.lastthread - heaptap never keeps a process alive, and never
holds back its signals (issue 10).

glibc ends a process when its last thread ends (start_thread calls exit(0)
when its count of threads drops to zero); a thread heaptap started counts
there, and it blocks every signal. rel_lastthread ends the program's last
thread four ways: main pthread_exit's and a worker returns (mainexit); a
thread that forked returns in the child (forkthread); the last thread is
cancelled (cancel); main pthread_exit's and the driver SIGTERMs the process
while a worker sleeps (sigterm), or a second after the worker has returned
(sigterm_late: without heaptap the process is gone by then).

Each mode runs once without heaptap (the baseline: status and time), then
under heaptap at HEAPTAP_RATE=1, at the default rate, with no heaptap thread
at all (HEAPTAP_SIGNAL=none, no interval), each with and without
HEAPTAP_AT_EXIT=1, and with HEAPTAP_INTERVAL=100ms and HEAPTAP_AT_EXIT=1.
The runs of one mode go side by side (they mostly sleep). Each must end
with the baseline's status within PROMPT seconds; one that does not gets
its threads' names (a lone heaptap-flush says it all) and, for the first of
each mode, a gdb backtrace, then is killed. With HEAPTAP_AT_EXIT=1 a
process that exits (not one killed by a signal) leaves a complete at-exit
pair, the fork child too; at rate 1 the at-exit profile of mainexit counts
the worker's blocks exactly.
"""
import os
import shutil
import signal
import subprocess
import time

import rlib
from rlib import Failure, Proc, check_outdir, thread_names

PROMPT = 10.0  # seconds; the program itself takes ~0.3 s
PAIR_WAIT = 5.0

CONFIGS = [
    ("rate 1", {"HEAPTAP_RATE": "1"}),
    ("rate 1, at exit", {"HEAPTAP_RATE": "1", "HEAPTAP_AT_EXIT": "1"}),
    ("default rate", {}),
    ("default rate, at exit", {"HEAPTAP_AT_EXIT": "1"}),
    ("no thread", {"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "1"}),
    ("no thread, at exit", {"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "1",
                            "HEAPTAP_AT_EXIT": "1"}),
    ("interval 100ms, at exit", {"HEAPTAP_INTERVAL": "100ms", "HEAPTAP_RATE": "1",
                                 "HEAPTAP_AT_EXIT": "1"}),
]

# What a run must end with, without heaptap as with it.
MODES = {
    "mainexit": {"rc": (0,), "says": "worker_done"},
    "forkthread": {"rc": (0,), "says": "child_exited"},
    "cancel": {"rc": (0,), "says": "cancelled"},
    "sigterm": {"rc": (-signal.SIGTERM,), "says": "worker_ready"},
    # The worker returns 200 ms in; the SIGTERM comes a second after "ready".
    # A slow machine may deliver it before the process is gone: either way
    # it ends promptly, as without heaptap.
    "sigterm_late": {"rc": (0, -signal.SIGTERM), "says": "worker_done"},
}
LATE = 1.0


def signals_on(env):
    return env.get("HEAPTAP_SIGNAL") != "none"


class Job:
    """One run of rel_lastthread, with the time it ended."""

    def __init__(self, ctx, prog, mode, tag, env, preload=True):
        self.tag = "%s [%s]" % (mode, tag)
        self.mode = mode
        self.env = env
        self.preload = preload
        self.outdir = ctx.tmpdir("lastthread")
        self.p = Proc(ctx, [prog, mode], outdir=self.outdir, env=env, preload=preload,
                      stdin=False)
        self.t_ref = self.p.t0  # what the time to exit is measured from
        self.t_end = None
        self.hung = None  # text for a run that did not end

    def poll(self):
        if self.t_end is None and self.p.proc.poll() is not None:
            self.t_end = time.monotonic()
        return self.t_end is not None

    @property
    def took(self):
        return (self.t_end or time.monotonic()) - self.t_ref


def drive_signals(ctx, jobs):
    """sigterm: once main has gone, the dump signal first (where heaptap has
    one and no interval makes dumps anyway: only a worker can take it now),
    then SIGTERM; sigterm_late: SIGTERM LATE s after ready."""
    for j in jobs:
        for line in ("^ready",) + (("^worker_ready",) if j.mode == "sigterm" else ()):
            try:
                if j.hung is None:
                    j.p.wait_line(line, PROMPT)
            except Failure as e:
                j.hung = str(e)
    if jobs[0].mode == "sigterm":
        time.sleep(0.3)  # main's pthread_exit is done
        usr2 = [j for j in jobs if j.hung is None and j.preload and signals_on(j.env) and
                "HEAPTAP_INTERVAL" not in j.env]
        for j in usr2:
            j.p.send(signal.SIGUSR2)
        for j in usr2:
            deadline = time.monotonic() + PAIR_WAIT
            paths = [j.p.profile_path(1, k) for k in ("heap", "threads")]
            while time.monotonic() < deadline and not all(os.path.exists(x) for x in paths):
                time.sleep(0.02)
            ctx.check(all(os.path.exists(x) for x in paths),
                      "%s: SIGUSR2 dumps while only a worker is left" % j.tag,
                      str(sorted(os.listdir(j.outdir))))
    else:
        # The time to exit still counts from the start: the process should
        # end by itself, before this signal.
        until = time.monotonic() + LATE
        while time.monotonic() < until:
            for j in jobs:
                j.poll()
            time.sleep(0.02)
    for j in jobs:
        if j.hung is None:
            if j.mode == "sigterm":
                j.t_ref = time.monotonic()
            try:
                j.p.send(signal.SIGTERM)
            except ProcessLookupError:
                pass


def live_task(pid):
    """A thread of pid that is not a zombie (gdb cannot attach through a
    thread-group leader that has ended, as main has after pthread_exit)."""
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/%d/task" % pid))
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return tid
    return None


def backtraces(pid):
    """gdb backtraces of every thread of pid and its children."""
    if not shutil.which("gdb"):
        return "(gdb not installed: no backtrace)"
    out = []
    for p in rlib.descendants(pid)[:4]:
        tid = live_task(p)
        if tid is None:
            continue
        try:
            r = subprocess.run(["gdb", "-p", str(tid), "-batch", "-nx", "-ex",
                                "set pagination off", "-ex", "thread apply all bt"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=60)
            text = r.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            text = "(gdb timed out)"
        keep = [l for l in text.splitlines() if l.startswith(("Thread ", "#"))]
        out.append("=== gdb backtrace of pid %d (through thread %d)\n%s" % (
            p, tid, "\n".join(keep) or text))
    return "\n".join(out)


def wait_all(ctx, jobs):
    deadline = time.monotonic() + PROMPT
    while time.monotonic() < deadline and not all([j.poll() for j in jobs]):
        time.sleep(0.02)
    backtrace_done = False
    for j in jobs:
        if j.poll():
            j.p.wait(10)
            continue
        # Still there: which threads keep it alive, then (once per mode)
        # the backtraces of every thread of it and its children.
        names = {pid: sorted(thread_names(pid).values())
                 for pid in rlib.descendants(j.p.pid)}
        why = "did not end within %.0fs; threads left: %s" % (PROMPT, names)
        bt = ""
        if not backtrace_done:
            backtrace_done = True
            bt = "\n" + backtraces(j.p.pid)
        j.p.kill()
        j.hung = why + "\n" + j.p.transcript() + bt


def check_job(ctx, j, base):
    want = MODES[j.mode]
    v = j.p.values()
    if j.hung is not None:
        ctx.check(False, "%s: ends promptly with status %s, as without heaptap" % (
            j.tag, " or ".join(str(r) for r in want["rc"])), j.hung)
        return
    rc = j.p.returncode
    ctx.check(rc in want["rc"] and j.took < PROMPT,
              "%s: ends with status %s in %.2fs (baseline %s in %.2fs)" % (
                  j.tag, rc, j.took, base["rc"], base["took"]), j.p.transcript())
    ctx.check(want["says"] in v, "%s: the program got as far as %s=" % (j.tag, want["says"]),
              j.p.transcript())
    if j.mode == "forkthread":
        ctx.check(v.get("child_exited") == "1" and v.get("child_status") == base["child_status"],
                  "%s: the child's thread returned, the child exited with status %s" % (
                      j.tag, base["child_status"]), j.p.transcript())
    hl = j.p.heaptap_lines()
    ctx.check(not hl, "%s: heaptap says nothing" % j.tag, str(hl[:3]))
    killed = rc is not None and rc < 0
    finals = check_outdir(ctx, j.outdir, j.tag + ": ", allow_tmp=killed)
    if j.env.get("HEAPTAP_AT_EXIT") == "1" and not killed:
        pids = [j.p.pid]
        if j.mode == "forkthread" and v.get("child", "").isdigit():
            pids.append(int(v["child"]))
        for pid in pids:
            seqs = sorted(s for (p, s) in finals if p == pid)
            who = "the child" if pid != j.p.pid else "the process"
            ctx.check(seqs and set(finals[(pid, seqs[-1])]) == {"heap", "threads"},
                      "%s: %s wrote its at-exit pair" % (j.tag, who), str(sorted(finals)))
        # At rate 1 (no interval: the last dump is the at-exit one) the
        # worker's blocks are counted exactly, by name: the dump is made
        # after main has ended, when /proc/self (the thread-group leader)
        # is a zombie whose maps read empty.
        if j.env.get("HEAPTAP_RATE") == "1" and "HEAPTAP_INTERVAL" not in j.env:
            seqs = sorted(s for (p, s) in finals if p == j.p.pid)
            if seqs and "heap" in finals[(j.p.pid, seqs[-1])]:
                prof = ctx.decode(finals[(j.p.pid, seqs[-1])]["heap"])
                nfail = len(ctx.failures)
                rlib.htlib.compare_expects(ctx, prof, j.p.expects(), "leaf",
                                           "%s: at-exit profile: " % j.tag)
                if len(ctx.failures) > nfail:
                    ctx.note("%s: the at-exit profile has %d mappings, comments %s; stacks:\n%s"
                             % (j.tag, len(prof.mappings),
                                [c for c in prof.comments if "rss" in c],
                                rlib.htlib.dump_stacks(prof, limit=5)))


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_lastthread")
    for mode in MODES:
        # Baseline, alone: its status is what every heaptap run must match.
        b = Job(ctx, prog, mode, "no heaptap", {}, preload=False)
        if mode.startswith("sigterm"):
            drive_signals(ctx, [b])
        wait_all(ctx, [b])
        if b.hung is not None or b.p.returncode not in MODES[mode]["rc"]:
            raise Failure("%s: the baseline run without heaptap did not end as expected "
                          "(status %s)\n%s" % (mode, b.p.returncode, b.hung or
                                               b.p.transcript()))
        base = {"rc": b.p.returncode, "took": b.took,
                "child_status": b.p.values().get("child_status")}
        ctx.note("%s without heaptap: status %s in %.2fs" % (mode, base["rc"], base["took"]))

        jobs = []
        for tag, env in CONFIGS:
            jobs.append(Job(ctx, prog, mode, tag, env))
        if mode.startswith("sigterm"):
            drive_signals(ctx, jobs)
        wait_all(ctx, jobs)
        for j in jobs:
            check_job(ctx, j, base)


if __name__ == "__main__":
    rlib.main(body, __doc__)
