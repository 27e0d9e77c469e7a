#!/usr/bin/env python3
"""Every allocation entry point, exact at HEAPTAP_RATE=1.

Runs examples/entry_points under LD_PRELOAD with HEAPTAP_RATE=1. The program
prints, per ep_* function, the in-use and allocated bytes and objects it holds
("expect" lines); the heap profile's totals for samples whose leaf frame is that
function must match exactly, read both with protoc and with go tool pprof -raw.
The program's own checks (errno, overflow, alignment errors behave as without
heaptap) must all pass.
"""
import htlib


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("entry_points")

    # Without heaptap: the program's own checks pass and it says heaptap is absent.
    plain = ctx.run([prog], preload=False)
    ctx.check(plain.returncode == 0, "entry_points runs without heaptap", plain.transcript())
    base = plain.expects()

    r = ctx.run([prog], env={"HEAPTAP_RATE": "1"})
    ctx.check(r.returncode == 0, "entry_points exits 0 under heaptap", r.transcript())
    ctx.check("FAIL" not in r.stdout, "allocator results and errno unchanged under heaptap",
              "\n".join(l for l in r.stdout_lines if "FAIL" in l))
    ctx.check(any(l.startswith("dump: rc=0") for l in r.stdout_lines), "heaptap_dump() returned 0",
              r.transcript())
    ctx.check(r.heaptap_lines() == [], "heaptap printed nothing", "\n".join(r.heaptap_lines()))
    expects = r.expects()
    ctx.check(expects == base, "the program holds the same with and without heaptap",
              "with %s\nwithout %s" % (expects, base))

    heap, threads = r.wait_profiles(1, timeout=5)
    prof = ctx.decode(heap)
    htlib.check_heap_shape(ctx, prof, rate=1)
    htlib.compare_expects(ctx, prof, expects, mode="leaf")
    htlib.check_no_drops(ctx, prof)
    ctx.check(prof.leaf_total("alloc_objects", "ep_usable_size") == 0,
              "malloc_usable_size allocates nothing")

    # Labels: each sample carries the allocation size as numeric label "bytes".
    with_label = [s for s in prof.samples if "bytes" in s["labels"]]
    ctx.check(prof.samples and len(with_label) == len(prof.samples),
              "every sample has a 'bytes' label", "%d of %d" % (len(with_label), len(prof.samples)))
    for s in prof.samples:
        st = prof.stack(s)
        if st and st[0] == "ep_malloc" and s["labels"].get("bytes") == [1 << 20]:
            k = prof.index("inuse_space")
            ctx.check(s["values"][k] == 1 << 20, "the 1 MiB block is one sample of 1 MiB",
                      "values %s" % s["values"])
            break
    else:
        ctx.check(False, "a sample for ep_malloc's 1 MiB block with bytes=1048576",
                  htlib.dump_stacks(prof, "ep_malloc"))

    # No heaptap frames: stacks start at the caller of the allocator.
    bad = [s for s in prof.samples for n in prof.stack(s)[:1]
           if n.startswith("ht_") or n.startswith("heaptap_") or n in
           ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc",
            "memalign", "valloc", "pvalloc", "reallocarray")]
    ctx.check(not bad, "no heaptap or allocator frames at the leaf",
              "\n".join(" <- ".join(prof.stack(s)[:6]) for s in bad[:5]))

    # Stacks reach main, with file:line for the example.
    s = prof.samples_with("ep_calloc")
    ctx.check(s and "main" in prof.stack(s[0]), "ep_calloc stacks reach main",
              htlib.dump_stacks(prof, "ep_calloc"))
    files = {f["filename"] for f in prof.functions.values() if f["name"] == "ep_calloc"}
    ctx.check(any(f.endswith("entry_points.c") for f in files),
              "ep_calloc has its source file", "filenames %s" % files)
    lines = [ln for loc in prof.locations.values() for fid, ln in loc["lines"]
             if prof.functions.get(fid, {}).get("name") == "ep_calloc"]
    ctx.check(lines and all(ln > 0 for ln in lines), "ep_calloc locations have line numbers",
              "lines %s" % lines)

    # Mappings: the executable with its build ID.
    exe = [m for m in prof.mappings.values() if m["filename"].endswith("/entry_points")]
    ctx.check(exe, "a mapping for the executable", str(list(prof.mappings.values())[:3]))
    if exe:
        ctx.check(all(len(m["build_id"]) >= 16 for m in exe), "the executable's build ID",
                  "build_id %r" % exe[0]["build_id"])

    # The second reader: go tool pprof -raw, inuse_space by leaf.
    if htlib.have_go_pprof():
        raw = htlib.pprof_raw_leaf_totals(heap, "inuse_space")
        for fn, want in sorted(expects.items()):
            got = raw.get(fn, 0)
            ctx.check(got == want["inuse_space"], "pprof -raw: %s inuse_space == %d"
                      % (fn, want["inuse_space"]), "got %d" % got)
    else:
        ctx.note("go tool pprof not available: second reader skipped")

    # HEAPTAP_RATE=0: heap sampling off. The program runs the same, the dump
    # still works, the heap profile has no samples, the thread profile counts.
    r0 = ctx.run([prog], env={"HEAPTAP_RATE": "0"})
    ctx.check(r0.returncode == 0 and "FAIL" not in r0.stdout, "entry_points runs at rate 0",
              r0.transcript())
    if r0.returncode == 0:
        h0, t0 = r0.wait_profiles(1, timeout=5)
        p0 = ctx.decode(h0)
        ctx.check(p0.period == 0, "rate 0: period 0", "period %s" % p0.period)
        ctx.check(p0.total("alloc_objects") == 0 and p0.total("inuse_space") == 0,
                  "rate 0: no heap samples", htlib.dump_stacks(p0))
        tp0 = ctx.decode(t0)
        ctx.check(tp0.total("threads") >= 1, "rate 0: the thread profile still counts",
                  "total %s" % tp0.total("threads"))

    # The same through the signal path.
    r2 = ctx.run([prog, "--signal"], env={"HEAPTAP_RATE": "1"})
    ctx.check(r2.returncode == 0 and "dump: signal rc=0" in r2.stdout,
              "entry_points --signal: SIGUSR2 dump appears", r2.transcript())
    if r2.returncode == 0 and "dump: signal rc=0" in r2.stdout:
        prof2 = ctx.decode(r2.profile_path(1, "heap"))
        htlib.compare_expects(ctx, prof2, r2.expects(), mode="leaf", label="(signal) ")


if __name__ == "__main__":
    htlib.main(body, __doc__)
