#!/usr/bin/env python3
"""reliability.exec - exec, posix_spawn, vfork and raw clone (issue 5: exec).

  1. raw clone(SIGCHLD) children (no atfork handlers) from a single-threaded
     program whose heaptap thread dumps every 10 ms at HEAPTAP_RATE=1, then
     posix_spawn, vfork+execve and vfork+setenv children while two threads
     allocate: nothing hangs, every child is reaped with its status.
  2. fork+exec and posix_spawn of a program (LD_PRELOAD inherited): the new
     image dumps under its own pid (heaptap.<child>.0001); the parent's files
     (.0001 before, .0002 after) are its own and untouched.
  3. exec without fork (same pid) after a dump: the new image must not
     overwrite heaptap.<pid>.0001; its dump goes to another sequence number.
  4. a failed exec returns to the program and heaptap keeps working.
  5. a daemon (fork, setsid, fork, chdir /, close_range(3, ~0)) keeps a
     sentinel in a pipe on the lowest free fds while it allocates at rate 1
     and dumps twice: the sentinel reads back intact (heaptap keeps no fd
     that could have been closed under it and later written to), and the
     daemon's dumps are under its own pid.
"""
import os

import htlib
import rlib
from rlib import Proc, check_outdir


def has_fn(prof, fn):
    return any(htlib.fn_matches(n, fn) for s in prof.samples for n in prof.stack(s))


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_exec")

    # 1. spawn/vfork/raw clone
    n = rlib.scale(300, 3000)
    d = ctx.tmpdir("exec-spawn")
    p = Proc(ctx, [prog, "spawn", n], outdir=d, stdin=False,
             env={"HEAPTAP_RATE": "1", "HEAPTAP_INTERVAL": "10ms"})
    p.wait(rlib.scale(90, 900))
    ctx.check(p.returncode == 0, "spawn: raw clone, posix_spawn, vfork children all reaped "
              "(%s)" % " ".join(l for l in p.out if "=" in l)[:200], p.transcript())
    ctx.check(p.values().get("dump") == "0", "spawn: API dump afterwards returns 0")
    finals = check_outdir(ctx, d, "spawn: ", allow_tmp=False)
    # Raw clone and vfork children share the parent's heaptap state but have
    # no thread of heaptap's, and end at once: they write nothing. An exec'd
    # /bin/true is a new image: under load it may live past the inherited
    # 10 ms interval and write a pair of its own, complete and under its own
    # pid (check_outdir above holds it to that).
    others = sorted({k[0] for k in finals if k[0] != p.pid})
    ctx.check(any(k[0] == p.pid for k in finals),
              "spawn: the parent's dumps are there", str(sorted(finals))[:300])
    if others:
        ctx.note("spawn: %d exec'd children lived past the 10 ms interval and wrote their "
                 "own pairs" % len(others))

    # 2. fork+exec and posix_spawn
    d = ctx.tmpdir("exec-fork")
    p = Proc(ctx, [prog, "forkexec"], outdir=d, stdin=False, env={"HEAPTAP_RATE": "1"})
    p.wait(60)
    ctx.check(p.returncode == 0, "forkexec: program and children exit 0", p.transcript())
    kids = [int(l.split("pid=")[1].split()[0]) for l in p.out if l.startswith("execchild")]
    finals = check_outdir(ctx, d, "forkexec: ")
    ctx.check(len(kids) == 2 and all((k, 1) in finals for k in kids),
              "forkexec: each exec'd child wrote heaptap.<its pid>.0001", str(sorted(finals)))
    ctx.check((p.pid, 1) in finals and (p.pid, 2) in finals and (p.pid, 3) not in finals,
              "forkexec: parent has exactly its .0001 and .0002", str(sorted(finals)))
    if (p.pid, 1) in finals and (p.pid, 2) in finals:
        a = ctx.decode(finals[(p.pid, 1)]["heap"])
        b = ctx.decode(finals[(p.pid, 2)]["heap"])
        ctx.check(not has_fn(a, "exec_child_alloc") and not has_fn(b, "exec_child_alloc"),
                  "forkexec: parent profiles hold no exec'd-child samples")
    for k in kids:
        if (k, 1) in finals:
            c = ctx.decode(finals[(k, 1)]["heap"])
            ctx.check(has_fn(c, "exec_child_alloc") and not has_fn(c, "forkexec_parent_alloc"),
                      "forkexec: child %d profile is the new image's only" % k)

    # 3. exec in place
    d = ctx.tmpdir("exec-self")
    p = Proc(ctx, [prog, "execself", "0"], outdir=d, stdin=False, env={"HEAPTAP_RATE": "1"})
    p.wait(60)
    ctx.check(p.returncode == 0 and "image2" in p.stdout, "execself: both images ran",
              p.transcript())
    finals = check_outdir(ctx, d, "execself: ")
    if (p.pid, 1) in finals:
        first = ctx.decode(finals[(p.pid, 1)]["heap"])
        ctx.check(has_fn(first, "image1_alloc") and not has_fn(first, "image2_alloc"),
                  "execself: heaptap.<pid>.0001 still holds image 1's profile (not overwritten "
                  "by the exec'd image)",
                  "functions in .0001: %s" % sorted(
                      {f["name"] for f in first.functions.values() if "image" in f["name"]}))
    else:
        ctx.check(False, "execself: heaptap.<pid>.0001 exists", str(sorted(finals)))
    img2 = [k for k in finals if k[0] == p.pid and
            has_fn(ctx.decode(finals[k]["heap"]), "image2_alloc")]
    ctx.check(len(img2) == 1 and img2[0][1] != 1,
              "execself: image 2's dump is under another sequence number", str(img2))

    # 4. failed exec
    d = ctx.tmpdir("exec-fail")
    p = Proc(ctx, [prog, "execfail"], outdir=d, stdin=False, env={"HEAPTAP_RATE": "1"})
    p.wait(60)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("exec_errno") == "2" and v.get("dump") == "0",
              "execfail: exec fails with ENOENT, heaptap still dumps", p.transcript())
    finals = check_outdir(ctx, d, "execfail: ")
    if (p.pid, 1) in finals:
        prof = ctx.decode(finals[(p.pid, 1)]["heap"])
        ctx.check(prof.anywhere_total("alloc_objects", "after_fail_alloc") == 50,
                  "execfail: allocations after the failed exec are all counted",
                  "got %d" % prof.anywhere_total("alloc_objects", "after_fail_alloc"))

    # 5. a daemon that closes every fd and reuses the numbers
    base_dir = ctx.tmpdir("exec-daemon-base")
    b = Proc(ctx, [prog, "daemon", os.path.join(base_dir, "result")], preload=False,
             stdin=False)
    b.wait(60)
    ctx.check(b.returncode == 0 and b.values().get("sentinel") == "intact",
              "daemon without heaptap: the sentinel reads back", b.transcript())
    d = ctx.tmpdir("exec-daemon")
    res = os.path.join(ctx.tmpdir("exec-daemon-res"), "result")
    p = Proc(ctx, [prog, "daemon", res], outdir=d, stdin=False, env={"HEAPTAP_RATE": "1"})
    p.wait(60)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("sentinel") == "intact" and v.get("dumps") == "2",
              "daemon (setsid, close_range, fd numbers reused): heaptap never touches the "
              "daemon's pipe; both dumps written", p.transcript())
    finals = check_outdir(ctx, d, "daemon: ")
    gpid = int(v.get("pid", "0"))
    ctx.check((gpid, 1) in finals and (gpid, 2) in finals,
              "daemon: its dumps are under its own pid, from .0001", str(sorted(finals)))
    if (gpid, 2) in finals:
        prof = ctx.decode(finals[(gpid, 2)]["heap"])
        ctx.check(prof.anywhere_total("alloc_objects", "daemon_alloc") == 100000,
                  "daemon: all 100000 allocations counted",
                  "got %d" % prof.anywhere_total("alloc_objects", "daemon_alloc"))


if __name__ == "__main__":
    rlib.main(body, __doc__)
