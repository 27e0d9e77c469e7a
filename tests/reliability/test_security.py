#!/usr/bin/env python3
"""reliability.security - AT_SECURE, close-on-exec, hostile environment
values (issue 5: security).

  1. AT_SECURE: a set-uid-root copy of a program *linked* against
     libheaptap.so (so the loader does load heaptap; LD_PRELOAD alone would be
     ignored), run as nobody through setpriv with HEAPTAP_RATE=1, a 10 ms
     interval and SIGUSR2: heaptap stays inert - no thread, no signal
     handler, no files, the API refuses. The same binary without the s-bit
     does sample, start its thread and write (so the check means something).
     Also the LD_PRELOAD form. Skipped (77) when not root or setpriv missing.
  2. Close-on-exec: every fd in a process under heaptap is close-on-exec,
     and heaptap keeps none open at all (an app that counts or passes fds
     sees the same numbers); after an API dump and a signal dump (heaptap's
     thread ran), the program execs a lister: it inherited no fd.
  3. Hostile HEAPTAP_* values (100 KB, empty, binary-ish, "%n%s", negative,
     overflowing): no crash, at most one heaptap: line per variable, each
     one line of bounded length, defaults used.
"""
import os
import shutil
import stat

import rlib
from rlib import Proc, Skip, check_outdir, list_outdir


def setuid_part(ctx):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        ctx.note("AT_SECURE: needs root and setpriv; skipped")
        return False
    linked = ctx.example("rel_security_linked")
    plain = ctx.example("rel_security")
    # Control: the linked program without the s-bit samples and dumps.
    d = ctx.tmpdir("sec-control")
    p = Proc(ctx, [linked, "inert"], outdir=d, preload=False, stdin=False,
             env={"HEAPTAP_RATE": "1", "HEAPTAP_INTERVAL": "10ms"})
    p.wait(60)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("tasks") == "2" and v.get("dump") == "0",
              "AT_SECURE control: linked program without s-bit runs heaptap (thread, dump)",
              p.transcript())
    finals, _, _ = list_outdir(d)
    ctx.check(len(finals) > 0, "AT_SECURE control: files written", str(sorted(finals)))

    base = ctx.tmpdir("sec-suid")
    os.chmod(base, 0o755)
    out = os.path.join(base, "out")
    os.mkdir(out)
    os.chmod(out, 0o1777)
    for label, src, preload in (("linked", linked, False), ("LD_PRELOAD", plain, True)):
        exe = os.path.join(base, "suid-" + os.path.basename(src))
        shutil.copy(src, exe)
        os.chown(exe, 0, 0)
        os.chmod(exe, 0o4755 | stat.S_ISUID)
        env = rlib.clean_env({"HEAPTAP_RATE": "1", "HEAPTAP_INTERVAL": "10ms",
                              "HEAPTAP_DIR": out, "HEAPTAP_AT_EXIT": "1"})
        envargs = ["%s=%s" % kv for kv in env.items() if kv[0].startswith("HEAPTAP_")]
        if preload:
            envargs.append("LD_PRELOAD=" + ctx.lib)
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env"] + \
            envargs + [exe, "inert"]
        p = Proc(ctx, argv, preload=False, stdin=False, cwd=base, raw_env=rlib.clean_env())
        p.wait(60)
        v = p.values()
        if p.returncode != 0 and "at_secure" not in v:
            raise Skip("cannot run a set-uid program here: " + p.stderr[:300])
        ctx.check(v.get("at_secure") == "1", "AT_SECURE %s: the process is secure" % label,
                  p.transcript())
        ctx.check(p.returncode == 0 and v.get("tasks") == "1",
                  "AT_SECURE %s: no heaptap thread" % label, p.transcript())
        ctx.check(v.get("usr2_default") == "1", "AT_SECURE %s: no SIGUSR2 handler" % label,
                  p.transcript())
        ctx.check(v.get("dump") != "0" and v.get("stats") != "0",
                  "AT_SECURE %s: the API refuses (dump=%s stats=%s)" % (
                      label, v.get("dump"), v.get("stats")), p.transcript())
        left = os.listdir(out)
        ctx.check(not left, "AT_SECURE %s: no files" % label, str(left))
    return True


def cloexec_part(ctx):
    prog = ctx.example("rel_security")
    lsfd = ctx.example("rel_lsfd")
    d = ctx.tmpdir("sec-cloexec")
    p = rlib.run(ctx, [lsfd], outdir=d, env={"HEAPTAP_RATE": "1"}, timeout=30)
    ctx.check(p.values().get("noncloexec") == "0",
              "cloexec: every fd open in a process under heaptap is close-on-exec",
              p.transcript())
    # heaptap holds no fd of its own between dumps, so it neither shifts the
    # program's fd numbers nor shows up in a child's fd list (Python's
    # test_subprocess, test_pass_fds_redirected): libunwind's memory-check
    # pipe is refused and memory is checked without it.
    ctx.check(p.values().get("fds") == "0",
              "cloexec: heaptap holds no fd after sampling at rate 1", " ".join(p.out))
    p = rlib.run(ctx, [prog, "cloexec", lsfd, d], outdir=d, timeout=60,
                 env={"HEAPTAP_RATE": "1"})
    v = p.values()
    ctx.check(v.get("dump") == "0" and v.get("signal_dump") == "1",
              "cloexec: API and signal dumps written before the exec", p.transcript())
    line = [l for l in p.out if l.startswith("fds=")]
    ctx.check(line and line[0].startswith("fds=0 "),
              "cloexec: no fd survives the exec", line[0] if line else p.transcript())
    check_outdir(ctx, d, "cloexec: ")


VALUES = [
    ("100KB", "A" * 100000),
    ("100KB digits", "9" * 100000),
    ("empty", ""),
    ("binary", "\x01\x02\xff\xfe\x7f\x1b[2J\n\r\t9"),
    ("format", "%n%s%s%s%n%p%x%99999999d"),
    ("negative", "-1"),
    ("overflow", "99999999999999999999999999999999"),
    ("spaces", "  12  "),
]
VARS = ["HEAPTAP_RATE", "HEAPTAP_SIGNAL", "HEAPTAP_INTERVAL", "HEAPTAP_AT_EXIT",
        "HEAPTAP_DEPTH", "HEAPTAP_DIR"]


def env_part(ctx):
    prog = ctx.example("rel_security")
    bad = []
    for var in VARS:
        for label, value in VALUES:
            cwd = ctx.tmpdir("sec-env")
            env = rlib.clean_env({"LD_PRELOAD": ctx.lib, "HEAPTAP_DIR": cwd})
            envb = {k.encode(): v.encode() for k, v in env.items()}
            envb[var.encode()] = value.encode("utf-8", "surrogateescape")
            p = Proc(ctx, [prog, "env"], preload=False, stdin=False, cwd=cwd, raw_env=envb)
            p.wait(60)
            v = p.values()
            what = "%s=%s" % (var, label)
            problems = []
            if p.returncode != 0:
                problems.append("exit %s" % p.returncode)
            hl = p.heaptap_lines()
            other = [l for l in p.err if l and not l.startswith("heaptap: ")]
            if len(hl) > 1:
                problems.append("%d heaptap: lines" % len(hl))
            if other:
                problems.append("stray stderr %r" % other[:2])
            if any(len(l) > 600 for l in hl):
                problems.append("a line of %d bytes" % max(len(l) for l in hl))
            if var == "HEAPTAP_RATE" and label not in ("spaces",) and v.get("rate") != "524288":
                problems.append("rate %s, not the default" % v.get("rate"))
            if var != "HEAPTAP_DIR" and v.get("dump") != "0":
                problems.append("dump=%s" % v.get("dump"))
            if problems:
                bad.append("%s: %s" % (what, ", ".join(problems)))
            ctx.note("%-28s rc=%s rate=%s dump=%s lines=%d %s" % (
                what, p.returncode, v.get("rate"), v.get("dump"), len(hl),
                (hl[0][:90] + "...") if hl else ""))
    ctx.check(not bad, "env: %d hostile values: no crash, at most one line, defaults used" % (
        len(VARS) * len(VALUES)), "\n     ".join(bad))


def body(ctx):
    ctx.need_protoc()
    cloexec_part(ctx)
    env_part(ctx)
    setuid_part(ctx)


if __name__ == "__main__":
    rlib.main(body, __doc__)
