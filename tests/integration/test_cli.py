#!/usr/bin/env python3
"""The heaptap command (build-tree copy): run, dump, top, --version, --help.

- heaptap run --rate 1 --dir D --at-exit -- prog: prog runs with heaptap
  preloaded (prepended to an existing LD_PRELOAD) and the HEAPTAP_* settings;
- heaptap dump PID sends the dump signal (--signal USR1 another one, and the
  target's own HEAPTAP_SIGNAL without --signal), prints the new heap and
  thread profile (both there when it returns); a process without heaptap is
  refused and left alive, a missing pid or a dump that never appears (--dir
  elsewhere, --timeout 1) is exit 1 with one heaptap: line;
- heaptap top FILE N prints the top sites with remember_session first;
- bad usage exits 2 with one 'heaptap: ' line.
"""
import os
import re
import subprocess
import time

import htlib


def body(ctx):
    ctx.need_protoc()
    cli = ctx.args.cli
    if not cli or not os.path.exists(cli):
        raise htlib.Failure("heaptap CLI not built: %s" % cli)
    env = htlib.clean_env()

    p = subprocess.run([cli, "--version"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx.check(p.returncode == 0 and re.match(rb"heaptap \d+\.\d+\.\d+\n$", p.stdout),
              "heaptap --version", repr(p.stdout + p.stderr))
    p = subprocess.run([cli, "--help"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx.check(p.returncode == 0 and b"heaptap run" in p.stdout, "heaptap --help")
    htlib.check_usage_errors(ctx, cli, [["frobnicate"], ["run"], ["run", "--rate"], ["dump"],
                                        ["dump", "notapid"]], env)

    # run: environment and LD_PRELOAD as the program sees them.
    outdir = ctx.tmpdir("cli")
    e = dict(env, LD_PRELOAD="libm.so.6")
    p = subprocess.run([cli, "run", "--rate", "1", "--dir", outdir, "--interval", "0",
                        "--signal", "USR1", "--depth", "32", "--at-exit", "--",
                        "sh", "-c", 'echo "$LD_PRELOAD|$HEAPTAP_RATE|$HEAPTAP_DIR|$HEAPTAP_INTERVAL|'
                        '$HEAPTAP_SIGNAL|$HEAPTAP_DEPTH|$HEAPTAP_AT_EXIT"'],
                       env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    want = "%s:libm.so.6|1|%s|0|USR1|32|1" % (os.path.realpath(ctx.lib), outdir)
    got = p.stdout.decode().strip()
    ctx.check(p.returncode == 0 and got == want, "heaptap run sets LD_PRELOAD (prepended) and HEAPTAP_*",
              "got %r\nwant %r\n%s" % (got, want, p.stderr.decode()))

    # run + at-exit: a real profile appears.
    prog = ctx.example("leaky_server")
    p = subprocess.run([cli, "run", "--rate", "1", "--dir", outdir, "--at-exit", "--", prog,
                        "--requests", "400", "--idle", "0"], env=env, cwd=outdir,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    ctx.check(p.returncode == 0, "heaptap run -- leaky_server exits 0", p.stderr.decode())
    m = re.search(rb"pid=(\d+)", p.stdout)
    heap = htlib.profile_path(outdir, int(m.group(1)), 1, "heap") if m else None
    ctx.check(heap and os.path.exists(heap), "heaptap run --at-exit wrote a profile",
              str(os.listdir(outdir)))

    # dump PID: with the default signal, with --signal, and with the target's
    # HEAPTAP_SIGNAL picked up from its environment (no --signal; the command's
    # own environment has none). It prints the two new files, heap then
    # threads, and both exist when it returns.
    def one_line(p):
        lines = p.stderr.decode("utf-8", "replace").splitlines()
        return len(lines) == 1 and lines[0].startswith("heaptap: ") and not p.stdout

    for sigopt, envsig in (([], None), (["--signal", "USR1"], "USR1"), ([], "USR1")):
        what = "heaptap dump %sPID%s" % ("".join(o + " " for o in sigopt),
                                         " (target has HEAPTAP_SIGNAL=%s)" % envsig if envsig else "")
        r = ctx.start([prog, "--requests", "2000", "--idle", "30"],
                      env={"HEAPTAP_SIGNAL": envsig} if envsig else None)
        try:
            r.wait_line(r"^phase idle", timeout=60)
            for seq in ((1, 2) if not envsig else (1,)):
                p = subprocess.run([cli, "dump"] + sigopt + [str(r.pid)], env=env, timeout=60,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                want = [r.profile_path(seq, "heap"), r.profile_path(seq, "threads")]
                there = [os.path.exists(f) for f in want]
                ctx.check(p.returncode == 0 and p.stdout.decode().splitlines() == want
                          and all(there) and not p.stderr,
                          "%s: exit 0, prints dump %d's heap then thread profile, both there"
                          % (what, seq),
                          "exit %d, stdout %r, stderr %r\nwant %s (exist: %s)\ndirectory: %s" % (
                              p.returncode, p.stdout, p.stderr, want, there,
                              sorted(os.listdir(r.outdir))))
                heap = want[0]
            if not envsig:
                # Its dumps go to its HEAPTAP_DIR; waiting in another directory
                # gives up after --timeout.
                other = ctx.tmpdir("cli-other")
                t0 = time.monotonic()
                p = subprocess.run([cli, "dump", "--timeout", "1", "--dir", other, str(r.pid)],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=30)
                el = time.monotonic() - t0
                ctx.check(p.returncode == 1 and one_line(p) and el < 5,
                          "heaptap dump --timeout 1 --dir ELSEWHERE PID: exit 1 in %.1fs, one "
                          "heaptap: line" % el,
                          "exit %d, stdout %r, stderr %r" % (p.returncode, p.stdout, p.stderr))
        finally:
            r.kill()

    # A process that does not catch the dump signal: refused, and not killed
    # (an uncaught SIGUSR2 would end it).
    sl = subprocess.Popen(["sleep", "30"], env=env)
    try:
        p = subprocess.run([cli, "dump", str(sl.pid)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        time.sleep(0.2)
        ctx.check(p.returncode == 1 and one_line(p) and sl.poll() is None,
                  "heaptap dump PID of a process without heaptap: exit 1, one heaptap: line, "
                  "the process lives on",
                  "exit %d, stdout %r, stderr %r, sleep exit %s" % (
                      p.returncode, p.stdout, p.stderr, sl.poll()))
    finally:
        sl.kill()
        sl.wait()
    # A pid that does not exist (a child that ended and was reaped).
    gone = subprocess.Popen(["true"], env=env)
    gone.wait()
    p = subprocess.run([cli, "dump", str(gone.pid)], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    ctx.check(p.returncode == 1 and one_line(p),
              "heaptap dump PID of no process: exit 1, one heaptap: line",
              "exit %d, stdout %r, stderr %r" % (p.returncode, p.stdout, p.stderr))

    # top: the compiled reader needs no Go.
    p = subprocess.run([cli, "top", heap, "5"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    out = p.stdout.decode()
    rows = [l for l in out.splitlines() if re.match(r"\s*-?[\d.]+ (B|KiB|MiB|GiB)\s+[\d.]+%", l)]
    ctx.check(p.returncode == 0 and rows and rows[0].rstrip().endswith("remember_session"),
              "heaptap top FILE 5 puts remember_session first", out + p.stderr.decode())

if __name__ == "__main__":
    htlib.main(body, __doc__)
