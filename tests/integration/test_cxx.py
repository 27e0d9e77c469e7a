#!/usr/bin/env python3
"""C++ new/delete, new[]/delete[], aligned new, std::vector and std::string.

Runs examples/cxx_new at HEAPTAP_RATE=1. operator new reaches malloc (and
aligned new reaches aligned_alloc) inside libstdc++; heaptap cuts those frames
as part of the allocator, so a stack starts at the function that called new.
The totals of samples with each cx_* function anywhere in the stack (std::
containers allocate from their own member functions) must equal the program's
"expect" lines exactly.
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

    # operator new is the allocator: it is never a frame, and plain new's
    # leaf is the function that called it.
    smp = prof.samples_with("cx_new_scalar")
    names = prof.stack(smp[0]) if smp else []
    ctx.check(names and htlib.fn_matches(names[0], "cx_new_scalar"),
              "cx_new_scalar is the leaf of its stacks", " <- ".join(names[:8]))
    news = [n for s in prof.samples for n in prof.stack(s)
            if "operator new" in n or n.startswith("_Zn")]
    ctx.check(not news, "no stack holds an operator new frame", str(sorted(set(news))[:5]))
    smp = prof.samples_with("cx_new_aligned")
    names = prof.stack(smp[0]) if smp else []
    ctx.check(smp, "aligned new is recorded", htlib.dump_stacks(prof, "cx_new_aligned"))


if __name__ == "__main__":
    htlib.main(body, __doc__)
