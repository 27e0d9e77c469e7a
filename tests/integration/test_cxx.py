#!/usr/bin/env python3
"""C++ new/delete, new[]/delete[], aligned new, std::vector and std::string.

Runs examples/cxx_new at HEAPTAP_RATE=1. operator new reaches malloc (and
aligned new reaches aligned_alloc) inside libstdc++, so the leaf frame is the
runtime's; the totals of samples with each cx_* function anywhere in the stack
must equal the program's "expect" lines exactly.
"""
import htlib


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("cxx_new")

    plain = ctx.run([prog], preload=False)
    ctx.check(plain.returncode == 0, "cxx_new runs without heaptap", plain.transcript())

    r = ctx.run([prog], env={"HEAPTAP_RATE": "1"})
    ctx.check(r.returncode == 0, "cxx_new exits 0 under heaptap", r.transcript())
    ctx.check("FAIL" not in r.stdout, "C++ checks pass under heaptap (bad_alloc, alignment)",
              r.transcript())
    ctx.check(any(l.startswith("dump: rc=0") for l in r.stdout_lines),
              "heaptap_dump() returned 0", r.transcript())
    expects = r.expects()
    ctx.check(expects == plain.expects(), "the program holds the same with and without heaptap")

    heap, _ = r.wait_profiles(1, timeout=5)
    prof = ctx.decode(heap)
    htlib.check_heap_shape(ctx, prof, rate=1)
    htlib.compare_expects(ctx, prof, expects, mode="anywhere")
    htlib.check_no_drops(ctx, prof)

    # The stacks pass through operator new: proof that C++ allocation is covered.
    smp = prof.samples_with("cx_new_scalar")
    names = prof.stack(smp[0]) if smp else []
    ctx.check(any("operator new" in n or n.startswith("_Zn") for n in names),
              "cx_new_scalar's stack passes through operator new", " <- ".join(names[:8]))
    smp = prof.samples_with("cx_new_aligned")
    names = prof.stack(smp[0]) if smp else []
    ctx.check(smp, "aligned new is recorded", htlib.dump_stacks(prof, "cx_new_aligned"))


if __name__ == "__main__":
    htlib.main(body, __doc__)
