#!/usr/bin/env python3
"""Linking heaptap: shared, static, and plain+weak under LD_PRELOAD (issue 4).

examples/linked is built three ways (linked_shared, linked_static,
linked_plain). Each run at HEAPTAP_RATE=1 writes a heap profile to a path
(heaptap_write_path) and through a pipe (heaptap_write); both must decode,
and cache_result()/serve_request() must show exactly the program's figures,
identical across the three builds. linked_plain without heaptap must run
normally and say heaptap is absent.
"""
import os

import htlib


def run_variant(ctx, name, preload):
    prog = ctx.example(name)
    outdir = ctx.tmpdir(name)
    path_out = os.path.join(outdir, "api.heap.pb.gz")
    pipe_out = os.path.join(outdir, "pipe.heap.pb.gz")
    r = ctx.run([prog, path_out, pipe_out], env={"HEAPTAP_RATE": "1"}, preload=preload,
                outdir=outdir)
    ok = ctx.check(r.returncode == 0 and "linked: ok" in r.stdout,
                   "%s: runs and writes its profiles" % name, r.transcript())
    ctx.check("pipe: rc=0" in r.stdout and "gzip=yes" in r.stdout,
              "%s: heaptap_write() into a pipe gives gzip bytes" % name, r.stdout)
    if not ok:
        return None
    results = {}
    for label, p in (("path", path_out), ("pipe", pipe_out)):
        prof = ctx.decode(p)
        htlib.check_heap_shape(ctx, prof, rate=1)
        htlib.compare_expects(ctx, prof, r.expects(), mode="leaf", label="%s/%s: " % (name, label))
        results[label] = {fn: (prof.leaf_total("inuse_space", fn), prof.leaf_total("alloc_space", fn))
                          for fn in ("cache_result", "serve_request")}
    ctx.check(results["path"] == results["pipe"], "%s: path and pipe profiles agree" % name,
              str(results))
    tprof = ctx.decode(path_out + ".threads")
    htlib.check_thread_shape(ctx, tprof)
    if not preload:
        mode = os.stat(path_out).st_mode & 0o777
        ctx.check(mode == 0o600, "%s: heaptap_write_path creates mode 0600" % name, "mode %o" % mode)
    return results["path"]


def body(ctx):
    ctx.need_protoc()
    seen = {}
    for name, preload in (("linked_shared", False), ("linked_static", False),
                          ("linked_plain", True)):
        seen[name] = run_variant(ctx, name, preload)
    vals = [v for v in seen.values() if v is not None]
    ctx.check(len(vals) == 3 and all(v == vals[0] for v in vals),
              "the three builds show identical cache_result/serve_request figures", str(seen))

    # The weak API with heaptap absent: the program runs normally.
    outdir = ctx.tmpdir("absent")
    r = ctx.run([ctx.example("linked_plain"), os.path.join(outdir, "a"), os.path.join(outdir, "b")],
                preload=False, outdir=outdir)
    ctx.check(r.returncode == 0 and "heaptap absent" in r.stdout,
              "linked_plain without heaptap runs normally and says heaptap is absent", r.transcript())
    ctx.check(r.stderr.strip() == "", "linked_plain without heaptap prints nothing on stderr", r.stderr)

    # The shared build really links libheaptap.so (not by preload).
    import subprocess
    p = subprocess.run(["readelf", "-d", ctx.example("linked_shared")], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    ctx.check(b"libheaptap.so" in p.stdout, "linked_shared has libheaptap.so in DT_NEEDED")
    p = subprocess.run(["readelf", "-d", ctx.example("linked_static")], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    ctx.check(b"libheaptap.so" not in p.stdout, "linked_static does not need libheaptap.so")


if __name__ == "__main__":
    htlib.main(body, __doc__)
