#!/usr/bin/env python3
"""reliability.signals - the dump signal (issue 5: signals).

  1. The application installs its own SIGUSR2 handler (sigaction, signal):
     its handler sees every SIGUSR2, stays installed, heaptap prints exactly
     one "heaptap:" line naming SIGUSR2 and writes nothing.
  2. SIGUSR2 ignored (SIG_IGN inherited from the parent): heaptap does not
     install, says so once, the program survives the signals.
  3. A storm of 200 SIGUSR2 while three threads allocate: the program
     finishes; dumps never overlap: every file decodes, sequence numbers
     are contiguous from 0001, pairs complete, no temporary file is left.
"""
import os
import signal
import time

import rlib
from rlib import Proc, check_outdir


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_signals")

    # 1. app handler
    for how in ("sigaction", "signal"):
        d = ctx.tmpdir("sig-app")
        p = Proc(ctx, [prog, "apphandler", how, 10], outdir=d, stdin=False)
        p.wait_line(r"^ready", 20)
        time.sleep(0.1)
        for _ in range(10):
            p.send(signal.SIGUSR2)
            time.sleep(0.05)
        p.wait(30)
        v = p.values()
        ctx.check(p.returncode == 0 and v.get("app_count") == "10" and
                  v.get("handler_kept") == "1",
                  "app handler (%s): sees all 10 SIGUSR2 and stays installed" % how,
                  p.transcript())
        hl = p.heaptap_lines()
        ctx.check(len(hl) == 1 and "SIGUSR2" in hl[0],
                  "app handler (%s): exactly one heaptap: line naming SIGUSR2" % how, str(hl))
        finals, tmps, _ = rlib.list_outdir(d)
        ctx.check(not finals and not tmps, "app handler (%s): no files" % how,
                  str(sorted(os.listdir(d))))

    # 2. SIGUSR2 ignored by the parent
    d = ctx.tmpdir("sig-ign")
    p = Proc(ctx, [prog, "busy"], outdir=d,
             preexec=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
    p.wait_line(r"^ready", 20)
    for _ in range(5):
        p.send(signal.SIGUSR2)
        time.sleep(0.05)
    p.close_stdin()
    p.wait(30)
    hl = p.heaptap_lines()
    ctx.check(p.returncode == 0 and len(hl) == 1 and "SIGUSR2" in hl[0],
              "SIG_IGN inherited: program unaffected, one heaptap: line", p.transcript())
    finals, _, _ = rlib.list_outdir(d)
    ctx.check(not finals, "SIG_IGN inherited: no dumps", str(sorted(finals)))

    # 3. storm
    nsig = rlib.scale(200, 5000)
    d = ctx.tmpdir("sig-storm")
    p = Proc(ctx, [prog, "storm"], outdir=d, env={"HEAPTAP_RATE": "4096"})
    p.wait_line(r"^ready", 20)
    for i in range(nsig):
        try:
            p.send(signal.SIGUSR2)
        except ProcessLookupError:
            break
        time.sleep(0.015 if i % 4 else 0.0)
    p.say("done")
    p.close_stdin()
    p.wait(rlib.scale(90, 600))
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("final_dump") == "0",
              "storm: the program finishes, its last API dump succeeds (%s dumps)" %
              v.get("dumps"), p.transcript())
    ctx.check(not p.heaptap_lines(), "storm: heaptap says nothing", str(p.heaptap_lines()[:3]))
    finals = check_outdir(ctx, d, "storm: ")
    seqs = sorted(s for (pid, s) in finals if pid == p.pid)
    ctx.check(seqs and seqs == list(range(1, len(seqs) + 1)),
              "storm: sequence numbers contiguous from 0001 (%d dumps)" % len(seqs),
              str(seqs[:50]))
    ctx.check(len(seqs) >= 2, "storm: the signals produced dumps", str(seqs))


if __name__ == "__main__":
    rlib.main(body, __doc__)
