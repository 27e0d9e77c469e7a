#!/usr/bin/env python3
"""reliability.resources - memory limits, full disks, vanished directories,
full tables (issue 5: resources).

  1. RLIMIT_AS small (as `ulimit -v`): the program's malloc, calloc, realloc,
     posix_memalign and a huge malloc fail with the same results and errno
     with heaptap as without; heaptap never aborts (it may turn itself off
     with one line when it cannot get its own memory).
  2. Full disk: HEAPTAP_DIR on a 256 KiB tmpfs (root and mount(2) needed,
     else that part is skipped). A dump that hits ENOSPC fails with one
     heaptap: line and leaves no file (final or temporary); after space is
     freed the next dump succeeds.
  3. Vanished directory: HEAPTAP_DIR removed while running: same rules; the
     next dump after it is re-created succeeds.
  4. Tables grow: 20000 live 8 MiB blocks at HEAPTAP_RATE=4 MiB are more
     samples than the sampled-block table's first size holds at three
     quarters (12288): it grows while they are allocated, so no sample is
     dropped (stats and the profile's comments), the estimate is the truth
     within 5% (about 17300 samples), and after the frees the estimate is 0.
"""
import os
import resource
import shutil
import subprocess
import time

import rlib
from rlib import Proc, check_outdir, list_outdir

SEMANTICS = "malloc="


def oom(ctx, prog):
    for limit_mb in (256, 64, 20):
        lim = limit_mb << 20

        def pre():
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

        runs = {}
        for label, preload, env in (("without heaptap", False, {}),
                                    ("with heaptap", True, {}),
                                    ("with heaptap at rate 1", True, {"HEAPTAP_RATE": "1"})):
            d = ctx.tmpdir("oom")
            p = Proc(ctx, [prog, "oom"], outdir=d, preload=preload, env=env, preexec=pre,
                     stdin=False)
            p.wait(60)
            runs[label] = p
            sem = [l for l in p.out if l.startswith(SEMANTICS)]
            ctx.check(p.returncode == 0 and "recovered=1" in p.stdout and
                      "dump_done=1" in p.stdout,
                      "oom %d MiB %s: program runs to the end" % (limit_mb, label),
                      p.transcript())
            ctx.check(len(p.heaptap_lines()) <= 1, "oom %d MiB %s: at most one heaptap: line" %
                      (limit_mb, label), str(p.heaptap_lines()))
            if label != "without heaptap":
                base = [l for l in runs["without heaptap"].out if l.startswith(SEMANTICS)]
                ctx.check(sem == base and sem,
                          "oom %d MiB %s: same NULL/errno results as without" % (
                              limit_mb, label), "%s vs %s" % (sem, base))
                ctx.note("%s: %s (without: %s)" % (label, p.values().get("blocks_before_null"),
                         runs["without heaptap"].values().get("blocks_before_null")))
            check_outdir(ctx, d, "oom %d MiB %s: " % (limit_mb, label))


def dump_cycle(ctx, tag, d, prog, break_it, fix_it, want_err, want_files):
    p = Proc(ctx, [prog, "cmd"], outdir=d, env={"HEAPTAP_RATE": "1"}, cwd="/")
    p.wait_line(r"^ready", 20)
    results = []

    def dump():
        n = len([l for l in p.out if l.startswith("dump=")])
        p.say("dump")
        for _ in range(300):
            got = [l for l in p.out if l.startswith("dump=")]
            if len(got) > n:
                results.append(int(got[-1].split("=")[1]))
                return results[-1]
            p.proc.poll()
            if p.proc.returncode is not None:
                break
            time.sleep(0.05)
        p.hang_report("no answer to dump")

    r1 = dump()
    ctx.check(r1 == 0, "%s: first dump succeeds" % tag, p.transcript())
    before = len(p.heaptap_lines())
    finals_before, _, _ = list_outdir(d)
    break_it()
    r2 = dump()
    ctx.check(r2 == -want_err, "%s: dump fails with -%s" % (tag, os.strerror(want_err)),
              "got %d\n%s" % (r2, p.transcript()))
    lines = p.heaptap_lines()[before:]
    ctx.check(len(lines) == 1, "%s: exactly one heaptap: line for the failure" % tag, str(lines))
    finals_mid, tmps_mid, _ = list_outdir(d)
    ctx.check(not (set(finals_mid) - set(finals_before)) and not tmps_mid,
              "%s: the failed dump leaves no file (final or temporary)" % tag,
              "before %s after %s tmp %s" % (sorted(finals_before), sorted(finals_mid),
                                              tmps_mid))
    fix_it()
    r3 = dump()
    ctx.check(r3 == 0, "%s: the next dump succeeds" % tag, p.transcript())
    p.say("quit")
    p.close_stdin()
    p.wait(30)
    ctx.check(p.returncode == 0, "%s: program exits 0" % tag, p.transcript())
    finals = check_outdir(ctx, d, tag + ": ")
    ctx.check(len(finals) == want_files, "%s: %d complete dump(s) on disk" % (tag, want_files),
              str(sorted(finals)))


def disk_full(ctx, prog):
    if os.geteuid() != 0 or not shutil.which("mount"):
        ctx.note("disk full: not root, skipped")
        return False
    d = ctx.tmpdir("diskfull")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        ctx.note("disk full: cannot mount a tmpfs (%s), skipped" % r.stdout.decode().strip())
        return False
    filler = os.path.join(d, "filler")

    def fill():
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b"\0")
        except OSError:
            pass
        os.close(fd)

    try:
        dump_cycle(ctx, "disk full", d, prog, fill, lambda: os.unlink(filler), 28, 2)
    finally:
        subprocess.run(["umount", "-l", d])
    return True


def vanished(ctx, prog):
    base = ctx.tmpdir("vanish")
    d = os.path.join(base, "out")
    os.mkdir(d, 0o700)
    dump_cycle(ctx, "vanished dir", d, prog, lambda: shutil.rmtree(d),
               lambda: os.mkdir(d, 0o700), 2, 1)


def tables(ctx, prog):
    d = ctx.tmpdir("tables")
    n = rlib.scale(20000, 40000)
    p = Proc(ctx, [prog, "tables", n], outdir=d, env={"HEAPTAP_RATE": str(4 << 20)},
             stdin=False)
    p.wait(120)
    ctx.check(p.returncode == 0, "tables: program exits 0", p.transcript())
    full = [l for l in p.out if l.startswith("full ")]
    freed = [l for l in p.out if l.startswith("freed ")]
    if not full or not freed:
        ctx.check(False, "tables: stats printed", p.transcript())
        return
    import re
    fv = dict(re.findall(r"(\w+)=(\d+)", full[0]))
    rv = dict(re.findall(r"(\w+)=(\d+)", freed[0]))
    truth = n * (8 << 20)
    ctx.check(int(fv["dropped_samples"]) == 0 and int(fv["live_samples"]) > 12288,
              "tables: the table grew, no sample dropped (%s live samples)" % fv["live_samples"],
              full[0])
    ctx.check(abs(int(fv["est_live_bytes"]) - truth) <= truth * 0.05,
              "tables: estimate within 5%% of the truth (%.1f GiB, truth %.1f GiB)" % (
                  int(fv["est_live_bytes"]) / 2**30, truth / 2**30), full[0])
    ctx.check(int(rv["live_samples"]) == 0 and int(rv["est_live_bytes"]) == 0,
              "tables: after the frees nothing is live", freed[0])
    finals = check_outdir(ctx, d, "tables: ")
    if (p.pid, 1) in finals:
        prof = ctx.decode(finals[(p.pid, 1)]["heap"])
        fig = prof.figures()
        ctx.check(fig.get("samples_dropped", -1) == 0 and
                  fig.get("table_overflow_samples", -1) == 0 and
                  any("heaptap_bytes_per_live_sample=" in c for c in prof.comments),
                  "tables: the profile's comments report no drops, and the bytes per live "
                  "sample", str(prof.comments))


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_resources")
    oom(ctx, prog)
    disk_full(ctx, prog)
    vanished(ctx, prog)
    tables(ctx, prog)


if __name__ == "__main__":
    rlib.main(body, __doc__)
