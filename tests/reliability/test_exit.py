#!/usr/bin/env python3
"""reliability.exit - every way out (issue 5: exit).

With HEAPTAP_AT_EXIT=1 and HEAPTAP_RATE=1, each program allocates ~3000
blocks from many distinct stacks (so a dump has real work), then:
return from main, exit(0), _exit(0), abort(), a double free (glibc aborts),
exit(0) from another thread
while three threads allocate, and exit(0) 0-50 ms after raising the dump
signal (exit during a dump); plus SIGTERM and SIGKILL during a dump. Each
must end promptly with its usual status, and every file under a final name
must decode completely. No temporary file is left even where the process was
killed: a dump's files are written unnamed (O_TMPFILE) and only linked into
place once whole.
"""
import signal
import time

import rlib
from rlib import Proc, check_outdir

PROMPT = 10.0


def one(ctx, prog, args, want_rc, tag, at_exit_file=None, env=None):
    d = ctx.tmpdir("exit")
    e = {"HEAPTAP_AT_EXIT": "1", "HEAPTAP_RATE": "1"}
    e.update(env or {})
    p = Proc(ctx, [prog] + args, outdir=d, stdin=False, env=e)
    p.wait(60)
    ctx.check(p.returncode == want_rc and p.elapsed < PROMPT,
              "%s: exit status %s in %.1fs" % (tag, want_rc, p.elapsed), p.transcript())
    ctx.check(not p.heaptap_lines(), "%s: heaptap says nothing" % tag, str(p.heaptap_lines()))
    finals = check_outdir(ctx, d, tag + ": ", allow_tmp=want_rc < 0)
    if at_exit_file is not None:
        ctx.check(((p.pid, 1) in finals) == at_exit_file,
                  "%s: at-exit dump %s" % (tag, "written" if at_exit_file else "not expected"),
                  str(sorted(finals)))
    return p, finals


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_exit")
    one(ctx, prog, ["return"], 0, "return", at_exit_file=True)
    one(ctx, prog, ["exit"], 0, "exit()", at_exit_file=True)
    one(ctx, prog, ["_exit"], 0, "_exit()", at_exit_file=False)
    one(ctx, prog, ["abort"], -signal.SIGABRT, "abort()", at_exit_file=False)
    for rate in ("1", "524288"):
        one(ctx, prog, ["doublefree"], -signal.SIGABRT,
            "double free (glibc aborts), rate %s" % rate, at_exit_file=False,
            env={"HEAPTAP_RATE": rate})
    for i in range(rlib.scale(3, 30)):
        one(ctx, prog, ["thread"], 0, "exit() from a thread #%d" % (i + 1), at_exit_file=True)
    delays = [0, 1, 3, 5, 10, 20, 50] * rlib.scale(1, 10)
    for delay in delays:
        one(ctx, prog, ["sigdump", str(delay)], 0, "exit %d ms after SIGUSR2" % delay)
        one(ctx, prog, ["sigdump", str(delay)], 0,
            "exit %d ms after SIGUSR2, no at-exit dump" % delay, env={"HEAPTAP_AT_EXIT": "0"})
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for delay in (0.0, 0.005, 0.02):
            d = ctx.tmpdir("exit-kill")
            p = Proc(ctx, [prog, "wait", "6000"], outdir=d, stdin=False,
                     env={"HEAPTAP_RATE": "1"})
            p.wait_line(r"^ready", 30)
            p.send(signal.SIGUSR2)
            time.sleep(delay)
            p.send(sig)
            p.wait(30)
            ctx.check(p.returncode == -sig, "%s %.0f ms into a dump: killed promptly" % (
                sig.name, delay * 1000), p.transcript())
            check_outdir(ctx, d, "%s %.0f ms into a dump: " % (sig.name, delay * 1000),
                         allow_tmp=False, want_pairs=False)


if __name__ == "__main__":
    rlib.main(body, __doc__)
