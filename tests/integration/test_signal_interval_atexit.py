#!/usr/bin/env python3
"""The dump triggers: interval, at-exit, another signal, the application's own handler.

- HEAPTAP_INTERVAL=200ms: several dumps while the program idles, seq 0001,
  0002, ... each a complete pair;
- HEAPTAP_AT_EXIT=1: one dump at normal exit;
- HEAPTAP_SIGNAL=USR1: kill -USR1 makes the dump;
- HEAPTAP_SIGNAL=none: no handler (and SIGUSR2 keeps its default action);
- an application that installs its own SIGUSR2 handler keeps it: its handler
  runs, heaptap says so in one line, heaptap_dump() still works;
- a SIGUSR2 ignored by the parent stays ignored (heaptap only takes a signal
  whose disposition is the default).
"""
import os
import re
import signal
import subprocess
import time

import htlib


def pairs(outdir, pid):
    seqs = set()
    for n in os.listdir(outdir):
        m = re.match(r"^heaptap\.%d\.(\d{4})\.(heap|threads)\.pb\.gz$" % pid, n)
        if m:
            seqs.add(int(m.group(1)))
    return sorted(seqs)


def interval(ctx, prog):
    r = ctx.run([prog, "--requests", "500", "--idle", "2"], env={"HEAPTAP_INTERVAL": "200ms"})
    ctx.check(r.returncode == 0, "HEAPTAP_INTERVAL=200ms: exits 0", r.transcript())
    seqs = pairs(r.outdir, r.pid)
    ctx.check(len(seqs) >= 4, "HEAPTAP_INTERVAL=200ms: several dumps in 2 s",
              "seqs %s" % seqs)
    ctx.check(seqs == list(range(1, len(seqs) + 1)), "sequence numbers count up from 0001",
              "seqs %s" % seqs)
    for s in seqs:
        ok = os.path.exists(r.profile_path(s, "heap")) and os.path.exists(r.profile_path(s, "threads"))
        if not ok:
            ctx.check(False, "dump %04d is a complete pair" % s)
            break
    else:
        ctx.check(bool(seqs), "every dump is a complete heap+threads pair")
    if seqs:
        ctx.decode(r.profile_path(seqs[-1], "heap"))
    ctx.check(r.heaptap_lines() == [], "HEAPTAP_INTERVAL=200ms: no heaptap: lines",
              "\n".join(r.heaptap_lines()))


def at_exit(ctx, prog):
    # 500 requests leak about 2 MiB: at the default rate that is ~4 samples
    # and none at all 2% of the time (seen once); at 64 KiB it is ~32.
    r = ctx.run([prog, "--requests", "500", "--idle", "0"],
                env={"HEAPTAP_AT_EXIT": "1", "HEAPTAP_RATE": "65536"})
    ctx.check(r.returncode == 0, "HEAPTAP_AT_EXIT=1: exits 0", r.transcript())
    ctx.check(pairs(r.outdir, r.pid) == [1], "HEAPTAP_AT_EXIT=1: exactly one dump, at exit",
              "seqs %s, dir %s" % (pairs(r.outdir, r.pid), os.listdir(r.outdir)))
    if pairs(r.outdir, r.pid) == [1]:
        prof = ctx.decode(r.profile_path(1, "heap"))
        ctx.check(prof.leaf_total("inuse_space", "remember_session") > 0,
                  "the at-exit dump still shows the leaked sessions")
    r = ctx.run([prog, "--requests", "500", "--idle", "0"])
    ctx.check(pairs(r.outdir, r.pid) == [], "without HEAPTAP_AT_EXIT no dump at exit",
              "seqs %s" % pairs(r.outdir, r.pid))


def other_signal(ctx, prog):
    r = ctx.start([prog, "--requests", "500", "--idle", "30"], env={"HEAPTAP_SIGNAL": "USR1"})
    try:
        r.wait_line(r"^phase idle", timeout=60)
        r.send(signal.SIGUSR1)
        r.wait_profiles(1, timeout=30)
        ctx.check(True, "HEAPTAP_SIGNAL=USR1: kill -USR1 makes a dump")
    finally:
        r.kill()
    r = ctx.start([prog, "--requests", "500", "--idle", "30"], env={"HEAPTAP_SIGNAL": "SIGUSR1"})
    try:
        r.wait_line(r"^phase idle", timeout=60)
        r.send(signal.SIGUSR1)
        r.wait_profiles(1, timeout=30)
        ctx.check(True, "HEAPTAP_SIGNAL=SIGUSR1: kill -USR1 makes a dump")
    finally:
        r.kill()
    r = ctx.start([prog, "--requests", "500", "--idle", "30"],
                  env={"HEAPTAP_SIGNAL": str(int(signal.SIGUSR1))})
    try:
        r.wait_line(r"^phase idle", timeout=60)
        r.send(signal.SIGUSR1)
        r.wait_profiles(1, timeout=30)
        ctx.check(True, "HEAPTAP_SIGNAL=%d: kill -USR1 makes a dump" % int(signal.SIGUSR1))
    finally:
        r.kill()
    # none: SIGUSR2 keeps its default action (terminate).
    r = ctx.start([prog, "--requests", "100", "--idle", "30"], env={"HEAPTAP_SIGNAL": "none"})
    r.wait_line(r"^phase idle", timeout=60)
    r.send(signal.SIGUSR2)
    rc = r.wait(30)
    ctx.check(rc == -signal.SIGUSR2, "HEAPTAP_SIGNAL=none: SIGUSR2 keeps its default action",
              "exit %s" % rc)
    ctx.check(pairs(r.outdir, r.pid) == [], "HEAPTAP_SIGNAL=none: no dump")


def own_handler(ctx):
    prog = ctx.example("own_handler")
    r = ctx.start([prog, "--wait", "10"])
    r.wait_line(r"^ready", timeout=30)
    time.sleep(0.3)
    r.send(signal.SIGUSR2)
    rc = r.wait(30)
    ctx.check(rc == 0 and "handler ran 1 times" in r.stdout,
              "the application's SIGUSR2 handler runs under heaptap", r.transcript())
    lines = r.heaptap_lines()
    ctx.check(len(lines) == 1 and re.search(r"USR2|signal", lines[0], re.I),
              "heaptap says in one line that the application has its own SIGUSR2 handler",
              "lines: %s" % lines)
    ctx.check("dump rc=0" in r.stdout, "heaptap_dump() still works", r.stdout)
    ctx.check(pairs(r.outdir, r.pid) in ([1], [1, 2]), "the API dump was written",
              "seqs %s" % pairs(r.outdir, r.pid))

    # Ignored by the parent: heaptap must leave it ignored.
    prog2 = ctx.example("leaky_server")

    def ignore_usr2():
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    outdir = ctx.tmpdir("ign")
    env = htlib.clean_env({"LD_PRELOAD": ctx.lib, "HEAPTAP_DIR": outdir})
    p = subprocess.Popen([prog2, "--requests", "100", "--idle", "2"], env=env, cwd=outdir,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=ignore_usr2)
    time.sleep(1.0)
    os.kill(p.pid, signal.SIGUSR2)
    out, err = p.communicate(timeout=30)
    ctx.check(p.returncode == 0, "an ignored SIGUSR2 stays ignored under heaptap",
              "exit %s\n%s" % (p.returncode, err.decode(errors="replace")))
    ctx.check(pairs(outdir, p.pid) == [], "no dump from an ignored SIGUSR2",
              "seqs %s" % pairs(outdir, p.pid))


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("leaky_server")
    interval(ctx, prog)
    at_exit(ctx, prog)
    other_signal(ctx, prog)
    own_handler(ctx)


if __name__ == "__main__":
    htlib.main(body, __doc__)
