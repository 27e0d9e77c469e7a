#!/usr/bin/env python3
"""The heaptap command (build-tree copy): run, dump, top, --version, --help.

- heaptap run --rate 1 --dir D --at-exit -- prog: prog runs with heaptap
  preloaded (prepended to an existing LD_PRELOAD) and the HEAPTAP_* settings;
- heaptap dump PID sends the dump signal (and --signal USR1 another one);
- heaptap top FILE N prints the top sites with remember_session first;
- bad usage exits 2 with one 'heaptap: ' line.
"""
import os
import re
import subprocess

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
    for bad in (["frobnicate"], ["run"], ["run", "--rate"], ["dump"], ["dump", "notapid"]):
        p = subprocess.run([cli] + bad, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = p.stderr.decode().splitlines()
        ctx.check(p.returncode == 2 and len(lines) == 1 and lines[0].startswith("heaptap: "),
                  "heaptap %s: exit 2 with one heaptap: line" % " ".join(bad),
                  "exit %d, stderr %r" % (p.returncode, p.stderr))

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

    # dump PID, with the default signal and with --signal.
    for sigopt, envsig in (([], None), (["--signal", "USR1"], "USR1")):
        r = ctx.start([prog, "--requests", "2000", "--idle", "30"],
                      env={"HEAPTAP_SIGNAL": envsig} if envsig else None)
        try:
            r.wait_line(r"^phase idle", timeout=60)
            p = subprocess.run([cli, "dump"] + sigopt + [str(r.pid)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            ctx.check(p.returncode == 0, "heaptap dump %s PID exits 0" % " ".join(sigopt),
                      p.stderr.decode())
            heap, _ = r.wait_profiles(1, timeout=30)
            ctx.check(True, "heaptap dump %s PID makes the process dump" % " ".join(sigopt))
        finally:
            r.kill()

    # top: the compiled reader needs no Go.
    p = subprocess.run([cli, "top", heap, "5"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    out = p.stdout.decode()
    rows = [l for l in out.splitlines() if re.match(r"\s*-?[\d.]+ (B|KiB|MiB|GiB)\s+[\d.]+%", l)]
    ctx.check(p.returncode == 0 and rows and rows[0].rstrip().endswith("remember_session"),
              "heaptap top FILE 5 puts remember_session first", out + p.stderr.decode())

if __name__ == "__main__":
    htlib.main(body, __doc__)
