#!/usr/bin/env python3
"""heaptap's own unwinder against libunwind (HEAPTAP_UNWIND_CHECK=1).

Each program runs at HEAPTAP_RATE=1 with HEAPTAP_UNWIND_CHECK=1: every stack heaptap's
own unwinder takes is taken again by libunwind and the two are compared frame by frame,
after the same filtering. The last profile's comments must say unwind_mismatches=0, and
unwind_fast must be most of the captures (the own unwinder was really used). The
programs: examples entry_points and cxx_new (operator new, bad_alloc thrown), rel_loader
(dlopen/dlclose of two plugins in turn, loaded at the same addresses: the rule cache
must be emptied), and unwind_subject.cpp, compiled here at -O2 (no frame pointers) and
-O0 with frame pointers: deep recursion past HEAPTAP_DEPTH, equal-frame twins calling
the same leaf, alloca, destructors that allocate while an exception unwinds, longjmp,
signal handlers on the thread's stack and on an alternate stack (signal frames go to
libunwind), threads with the smallest stacks.
"""
import glob
import os
import re
import shutil
import subprocess

import htlib

CHECK_ENV = {"HEAPTAP_RATE": "1", "HEAPTAP_UNWIND_CHECK": "1", "HEAPTAP_AT_EXIT": "1"}


def compiler(ctx):
    """The C++ compiler the build used (CMakeCache.txt), else c++ on PATH."""
    if ctx.builddir:
        cache = os.path.join(ctx.builddir, "CMakeCache.txt")
        if os.path.exists(cache):
            with open(cache) as f:
                m = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.+)$", f.read(), re.M)
            if m and os.path.exists(m.group(1).strip()):
                return m.group(1).strip()
    return shutil.which("c++") or shutil.which("g++")


def last_heap(run):
    """The last heap profile the run wrote."""
    paths = glob.glob(os.path.join(run.outdir, "heaptap.%d.*.heap.pb.gz" % run.pid))
    return max(paths) if paths else None


def check_run(ctx, tag, argv, env=None, min_fast=1):
    run = ctx.run(argv, env=dict(CHECK_ENV, **(env or {})), timeout=240)
    ctx.check(run.returncode == 0, "%s: exits 0" % tag, run.transcript())
    told = [l for l in run.heaptap_lines() if "unwind check" in l]
    ctx.check(not told, "%s: no mismatch reported" % tag, "\n".join(told))
    heap = last_heap(run)
    if not ctx.check(heap is not None, "%s: a heap profile at exit" % tag, run.transcript()):
        return
    fig = ctx.decode(heap).figures()
    fast, fallback = fig.get("unwind_fast"), fig.get("unwind_fallback")
    ctx.check(fig.get("unwind_mismatches") == 0,
              "%s: unwind_mismatches=0 (unwind_fast=%s unwind_fallback=%s)" % (
                  tag, fast, fallback), str(fig))
    ctx.check(fast is not None and fast >= min_fast and fast > (fallback or 0),
              "%s: most stacks taken by heaptap's own unwinder" % tag, str(fig))


def body(ctx):
    ctx.need_protoc()
    for name in ("entry_points", "cxx_new"):
        check_run(ctx, name, [ctx.example(name)], min_fast=20)

    if ctx.builddir:
        rel = os.path.join(ctx.builddir, "tests", "reliability")
        loader = os.path.join(rel, "rel_loader")
        if os.path.exists(loader) and os.path.exists(os.path.join(rel, "librel_plugin_b.so")):
            check_run(ctx, "rel_loader (dlclose and reload)", [loader, rel, 300, "ab"],
                      min_fast=600)
        else:
            ctx.note("rel_loader not built: dlclose and reload not covered here")

    cxx = compiler(ctx)
    if not cxx or not ctx.srcdir:
        ctx.note("no C++ compiler or source directory: unwind_subject not run")
        return
    src = os.path.join(ctx.srcdir, "tests", "integration", "unwind_subject.cpp")
    out = ctx.tmpdir("unwind-subject")
    for tag, flags in (("O2", ["-O2"]), ("O0-fp", ["-O0", "-fno-omit-frame-pointer"])):
        exe = os.path.join(out, "unwind_subject_" + tag)
        cc = subprocess.run([cxx, "-g", "-pthread"] + flags + ["-o", exe, src],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if not ctx.check(cc.returncode == 0, "unwind_subject %s compiles" % tag,
                         cc.stdout.decode("utf-8", "replace")):
            continue
        check_run(ctx, "unwind_subject %s" % tag, [exe], min_fast=5000)
        check_run(ctx, "unwind_subject %s, HEAPTAP_DEPTH=256" % tag, [exe, "400"],
                  env={"HEAPTAP_DEPTH": "256"}, min_fast=5000)


if __name__ == "__main__":
    htlib.main(body, __doc__)
