#!/usr/bin/env python3
"""reliability.loader - dlopen/dlclose storm at HEAPTAP_RATE=1 (issue 5: loader).

Four threads dlopen, call and dlclose a plugin while two more threads
allocate: first librel_plugin_a.so alone, then librel_plugin_a.so and
librel_plugin_b.so at random (they take turns at one load address, the
reliability research's U02 case). The plugins' blocks are kept, so after the storm (both
libraries unloaded) their samples are live: the dump must still name
rel_plugin_alloc_a/_b, count every block exactly, and give those locations a
mapping with the right library file name.
"""
import os

import htlib
import rlib
from rlib import Proc, check_outdir


def body(ctx):
    ctx.need_protoc()
    storm(ctx, "a", (("librel_plugin_a.so", "rel_plugin_alloc_a"),))
    storm(ctx, "ab", (("librel_plugin_a.so", "rel_plugin_alloc_a"),
                      ("librel_plugin_b.so", "rel_plugin_alloc_b")))


def storm(ctx, which, libs):
    prog = ctx.example("rel_loader")
    iters = rlib.scale(2000, 50000)
    tag = "storm %s: " % which
    d = ctx.tmpdir("loader")
    p = Proc(ctx, [prog, ctx.bindir, iters, which], outdir=d, stdin=False,
             env={"HEAPTAP_RATE": "1"})
    p.wait(rlib.scale(120, 1200))
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("failures") == "0" and v.get("dump") == "0",
              tag + "%d dlopen/dlclose per thread, no failures, dump ok (%ss)" % (
                  iters, v.get("secs")), p.transcript())
    ctx.check(v.get("still_loaded") == "0", tag + "plugins unloaded before the dump",
              p.transcript())
    finals = check_outdir(ctx, d, tag)
    if (p.pid, 1) not in finals:
        ctx.check(False, tag + "dump written", str(sorted(finals)))
        return
    prof = ctx.decode(finals[(p.pid, 1)]["heap"])
    expects = {k: v for k, v in htlib.parse_expects(p.out).items()
               if any(k == fn for _, fn in libs)}
    htlib.compare_expects(ctx, prof, expects, mode="leaf", label=tag)
    for lib, fn in libs:
        fids = {f["id"] for f in prof.functions.values() if f["name"] == fn}
        ctx.check(bool(fids), tag + "function %s named in the profile" % fn)
        maps = set()
        for loc in prof.locations.values():
            if any(fid in fids for fid, _ in loc["lines"]):
                m = prof.mappings.get(loc["mapping_id"])
                maps.add(os.path.basename(m["filename"]) if m else "<no mapping>")
        ctx.check(maps == {lib}, tag + "%s locations map to %s" % (fn, lib), str(maps))
        m = [m for m in prof.mappings.values() if os.path.basename(m["filename"]) == lib]
        ctx.check(m and all(x["build_id"] for x in m), tag + "%s mapping has a build ID" % lib,
                  str(m))


if __name__ == "__main__":
    rlib.main(body, __doc__)
