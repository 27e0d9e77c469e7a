#!/usr/bin/env python3
"""reliability.smallstack - allocating on small stacks that fault when overrun (issue 10).

heaptap's malloc, and its sampled path (unwinding, recording), run on the
stack the program allocates on. rel_smallstack gives every stack it creates
a PROT_NONE guard page directly below the usable area, so an overrun is a
SIGSEGV rather than silent corruption (rel_unwind's smallstack mode cannot
see that). Four cases, each run on its own so one fault does not hide the
others:

  sig8k    a SA_ONSTACK SIGUSR1 handler on an 8 KiB sigaltstack (the
           traditional SIGSTKSZ) allocating 64 B, 100000 B and 2 MiB,
           50 times;
  sigmin   the same on AT_MINSIGSTKSZ + 4 KiB (the machine's own minimum:
           the kernel's signal frame, which grows with the xsave state, plus
           4 KiB), so the size follows the CPU rather than one machine;
  threads  8 threads on PTHREAD_STACK_MIN stacks allocating the same sizes;
  nested   4 threads on PTHREAD_STACK_MIN stacks each creating a child on
           another (heaptap also unwinds at thread creation), both
           allocating.

Checks, per case:

  * without heaptap the case runs to the end; if it does not (this CPU's
    signal frame, or glibc alone, needs more), that is noted with the
    evidence and heaptap is not blamed for that case;
  * under heaptap at HEAPTAP_RATE=1 and at the default rate: no fault
    (exit 0, done=1, dump written); on a fault the program's own fault=
    line (which guard page, how far, which function) and a gdb backtrace
    of a rerun are printed;
  * at rate 1 the counts at each allocating function are exact; at the
    default rate the 2 MiB functions were sampled (the sampled path really
    ran on the small stack);
  * heaptap may take a sample without its stack when there is too little
    room: such a sample's stack is exactly [allocating function,
    "[stack not taken: small stack]"], and the heap profile's
    small_stack_samples=N figure is consistent with the samples (noted
    per run; 0 or missing is fine);
  * heaptap prints nothing on stderr, except about small stacks.
"""
import re
import shutil
import signal
import subprocess

import htlib
import rlib
from rlib import check_outdir

CASES = ("sig8k", "sigmin", "threads", "nested")
PREFIXES = {"sig8k": ("sig8k",), "sigmin": ("sigmin",), "threads": ("thr",),
            "nested": ("parent", "child")}
MARKER = "[stack not taken: small stack]"
# The only heaptap: lines a run may print: a word about small stacks.
ALLOWED_STDERR = re.compile(r"small stack|stack not taken", re.I)
RATES = (("1", {"HEAPTAP_RATE": "1"}), ("default", {}))


def status(rc):
    if rc is not None and rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit %s" % rc


def gdb_rerun(ctx, argv, env):
    """Run argv once more under gdb and return where it faulted (evidence only).

    heaptap's variables go to the inferior with 'set env' (not gdb's own
    environment, or gdb would run under heaptap too)."""
    if not shutil.which("gdb"):
        return "(gdb not installed: no backtrace)"
    cmds = ["set pagination off", "set startup-with-shell off", "set confirm off",
            "handle SIGUSR1 nostop noprint pass"]
    cmds += ["set env %s %s" % (k, v) for k, v in sorted(env.items())]
    cmds += ["run", "info registers rsp rip", "x/i $pc", "bt 30", "kill"]
    args = ["gdb", "-batch", "-nx"]
    for c in cmds:
        args += ["-ex", c]
    try:
        r = subprocess.run(args + ["--args"] + argv, env=htlib.clean_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        return "(gdb timed out)"
    text = r.stdout.decode("utf-8", "replace")
    keep = [l for l in text.splitlines()
            if l.startswith(("#", "rsp", "rip", "=>", "Program", "Thread ", "fault=", "case="))
            and "New Thread" not in l]
    return "=== gdb rerun:\n" + "\n".join(keep or text.splitlines()[-40:])


def fns_of(case):
    return [p + s for p in PREFIXES[case] for s in ("_64", "_100k", "_2m")]


def small_stack_part(ctx, prof, tprof, case, tag):
    """Samples taken without their stack: shape, and the figure that counts them."""
    fns = fns_of(case)
    marked = [prof.stack(s) for s in prof.samples if MARKER in prof.stack(s)]
    bad = [st for st in marked if len(st) != 2 or st[1] != MARKER or st[0] not in fns]
    ctx.check(not bad, tag + "samples without a stack are exactly [allocating function, %r]"
              % MARKER, "\n".join(" <- ".join(st) for st in bad[:10]))
    k = prof.index("alloc_objects")
    objs = sum(s["values"][k] for s in prof.samples if MARKER in prof.stack(s))
    fig = prof.figures().get("small_stack_samples")
    ctx.check(bool(marked) <= bool(fig),
              tag + "small_stack_samples figure is there when samples without a stack are",
              "%d such samples, figure %s; comments %s" % (len(marked), fig, prof.comments))
    # The figure may also count thread-creation stacks not taken.
    tmarked = []
    if tprof is not None:
        tmarked = [tprof.stack(s) for s in tprof.samples if MARKER in tprof.stack(s)]
    ctx.check(bool(fig) <= bool(marked or tmarked),
              tag + "small_stack_samples > 0 only with samples without a stack",
              "figure %s, none in the heap or threads profile" % fig)
    ctx.note("%ssmall_stack_samples=%s; heap profile: %d stacks (%d allocations) without "
             "their stack%s; threads profile: %d" % (
                 tag, "missing" if fig is None else fig, len(marked), objs,
                 (" at " + ", ".join(sorted({st[0] for st in marked}))) if marked else "",
                 len(tmarked)))


def run_case(ctx, prog, case, rate, env):
    tag = "%s, rate %s: " % (case, rate)
    d = ctx.tmpdir("smallstack")
    argv = [prog, case]
    p = rlib.run(ctx, argv, outdir=d, env=env, timeout=30)
    v = p.values()
    ok = p.returncode == 0 and v.get("done") == "1" and v.get("dump") == "0"
    detail = p.transcript()
    if not ok:
        faults = [l for l in p.out if l.startswith("fault=")]
        detail = "%s; %s\n%s\n%s" % (
            status(p.returncode),
            "the program's report: " + faults[0] if faults else
            "no fault= line (SIGSEGV blocked or no room to report it)",
            detail, gdb_rerun(ctx, argv, dict(env, HEAPTAP_DIR=d, LD_PRELOAD=ctx.lib)))
    ctx.check(ok, tag + "no fault: runs to the end under heaptap, dump written", detail)
    lines = [l for l in p.heaptap_lines() if not ALLOWED_STDERR.search(l)]
    ctx.check(not lines, tag + "no heaptap: lines on stderr (other than about small stacks)",
              "\n".join(lines[:10]))
    if not ok:
        return
    finals = check_outdir(ctx, d, tag)
    if (p.pid, 1) not in finals:
        ctx.check(False, tag + "dump 1 written", str(sorted(finals)))
        return
    prof = ctx.decode(finals[(p.pid, 1)]["heap"])
    tprof = ctx.decode(finals[(p.pid, 1)]["threads"]) if "threads" in finals[(p.pid, 1)] \
        else None
    if rate == "1":
        htlib.compare_expects(ctx, prof, htlib.parse_expects(p.out), mode="leaf", label=tag)
    else:
        for fn in fns_of(case):
            if fn.endswith("_2m"):
                got = prof.leaf_total("alloc_objects", fn)
                ctx.check(got > 0, tag + "%s was sampled (estimate %d allocations)" % (fn, got),
                          htlib.dump_stacks(prof, sample_type="alloc_objects"))
    small_stack_part(ctx, prof, tprof, case, tag)


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_smallstack")
    tested = 0
    for case in CASES:
        base = rlib.run(ctx, [prog, case], preload=False, timeout=30)
        bv = base.values()
        sizes = [l for l in base.out if l.startswith(("sizes", "case="))]
        if sizes and case == CASES[0]:
            ctx.note(sizes[0])
        if base.returncode != 0 or bv.get("done") != "1":
            # Not heaptap's doing: glibc alone (or this CPU's signal frame)
            # does not fit. Say so with the evidence, and test the rest.
            ctx.note("%s: WITHOUT heaptap this case does not run on this machine (%s), so "
                     "heaptap is not tested on it:\n%s" % (case, status(base.returncode),
                                                           base.transcript()))
            continue
        ctx.check(True, "%s without heaptap: runs to the end (%s)" % (
            case, "; ".join(l for l in sizes if l.startswith("case="))))
        tested += 1
        for rate, env in RATES:
            run_case(ctx, prog, case, rate, env)
    if not tested:
        raise rlib.Skip("no case runs to the end without heaptap on this machine")


if __name__ == "__main__":
    rlib.main(body, __doc__)
