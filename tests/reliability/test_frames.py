#!/usr/bin/env python3
"""reliability.frames - no heaptap frame anywhere in any stack.

The contract: a heap stack starts at the function that called the allocator,
with no heaptap frame anywhere in it; a thread's creation stack starts at the
caller of pthread_create. rel_frames (rel_frames.c, rel_frames_cxx.cpp) calls
every allocation entry point from its own function (malloc, through a
function pointer too, calloc, realloc in every form, reallocarray,
posix_memalign, aligned_alloc, memalign, valloc, pvalloc, operator new
scalar/array/aligned/nothrow with their deletes), starts threads from main,
from those threads and from theirs (one std::thread too), and prints the
executable ranges of the libheaptap.so (and libunwind) it has loaded. It is
built at -O0, -O2 (no frame pointers), -O3 (-fno-plt) and -O2 -flto.

For each build:
  * without heaptap, the program runs to the end and its realloc moved;
  * at HEAPTAP_RATE=1 and at the default rate, in the heap and the thread
    profile, per program function the stacks go through: no location lies in
    libheaptap's (or libunwind's) executable ranges (address = return
    address - 1, still inside for any heaptap frame), none is in a mapping
    named libheaptap or libunwind, no function is named ht_* or heaptap_*;
  * at rate 1, every function's figures are exact at its own leaf
    (compare_expects, mode leaf): the leaf is the calling function, never a
    heaptap or runtime one; and exact over the stacks through it, so no block
    is counted twice (a second sample with a heaptap leaf);
  * at the default rate, every function was sampled (its 8 MiB block), so
    the frame check above was not vacuous;
  * thread profile: exact live counts per spawning function at the leaf,
    std::thread's spawner in its stack, the main thread once, the total; a
    nested thread's creation stack holds the function of the thread that
    created it.
"""
import os

import htlib
import rlib
from rlib import check_outdir

REQUIRED = ("O0", "O2", "O3")
OPTIONAL = ("lto",)

# The entry point each function exercises (for failure messages).
ENTRY = {
    "ep_malloc": "malloc, free, free_sized",
    "ep_malloc_indirect": "malloc through a volatile function pointer",
    "ep_calloc": "calloc",
    "ep_realloc_null": "realloc(NULL, n)",
    "ep_realloc_grow": "realloc growing (in place or not)",
    "ep_realloc_shrink": "realloc shrinking",
    "ep_realloc_zero": "realloc(p, 0) (glibc: a free)",
    "ep_realloc_move": "realloc that moves the block",
    "ep_reallocarray_null": "reallocarray(NULL, n, s)",
    "ep_reallocarray": "reallocarray(p, n, s)",
    "ep_posix_memalign": "posix_memalign",
    "ep_aligned_alloc": "aligned_alloc, free_aligned_sized",
    "ep_memalign": "memalign",
    "ep_valloc": "valloc",
    "ep_pvalloc": "pvalloc",
    "cx_new_scalar": "operator new, sized delete",
    "cx_new_array": "operator new[], delete[], sized delete[]",
    "cx_new_aligned": "aligned new/new[] (std::align_val_t), aligned deletes",
    "cx_new_nothrow": "nothrow new/new[], aligned nothrow new",
    "fr_thread_alloc": "malloc in a created thread (3 levels of nesting)",
    "fr_thread_short": "malloc in a thread joined before the dump",
    "fr_spawn_l1": "pthread_create from main",
    "fr_spawn_l2": "pthread_create from a thread main created",
    "fr_spawn_l3": "pthread_create from a thread of a thread",
    "fr_spawn_joined": "pthread_create, joined before the dump",
    "cx_spawn_std_thread": "std::thread (pthread_create inside libstdc++)",
    "fr_thread_l1": "thread function, level 1",
    "fr_thread_l2": "thread function, level 2",
    "fr_thread_l3": "thread function, level 3",
    "main": "main",
}
# A nested spawner's stacks must go through the function of the thread that
# runs it.
CREATOR = {"fr_spawn_l1": "main", "fr_spawn_l2": "fr_thread_l1", "fr_spawn_l3": "fr_thread_l2"}
OTHER = "(no rel_frames function)"


def parse_ranges(lines):
    """{'own': [(lo, hi)], 'unwind': [...]} from 'own LO HI' lines, and file names."""
    ranges, files = {"own": [], "unwind": []}, {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] in ranges:
            ranges[parts[0]].append((int(parts[1], 16), int(parts[2], 16)))
        elif len(parts) == 2 and parts[0] in ("own_file", "unwind_file"):
            files[parts[0][:-5]] = parts[1]
    return ranges, files


def parse_thread_expects(lines):
    leaf, anywhere = {}, {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "texpect":
            leaf[parts[1]] = int(parts[2])
        elif len(parts) == 3 and parts[0] == "texpect_any":
            anywhere[parts[1]] = int(parts[2])
    return leaf, anywhere


def loc_names(prof, loc):
    names = []
    for fid, _line in loc["lines"]:
        fn = prof.functions.get(fid)
        names.append(fn["name"] if fn else "<missing function %d>" % fid)
    return names or ["0x%x" % loc["address"]]


def heaptap_reasons(prof, loc, ranges):
    """Why this location is one of heaptap's frames ([] when it is not)."""
    why = []
    a = loc["address"]
    if a:
        for tag, lib in (("own", "libheaptap"), ("unwind", "libunwind")):
            # The address is the return address - 1: inside the range for
            # any call made from heaptap's code, even the range's last one.
            if any(lo <= a < hi or lo <= a + 1 < hi for lo, hi in ranges[tag]):
                why.append("in %s's text" % lib)
    m = prof.mappings.get(loc["mapping_id"])
    base = os.path.basename(m["filename"]) if m else ""
    for lib in ("libheaptap", "libunwind"):
        if lib in base:
            why.append("mapping %s" % base)
    if any(n.startswith(("ht_", "heaptap_", "_ULx86_64_", "_Ux86_64_", "unw_"))
           for n in loc_names(prof, loc)):
        why.append("heaptap/libunwind function name")
    return why


def describe(prof, smp, ranges, k):
    """A sample's stack, leaf first, heaptap frames marked."""
    out = ["%d:" % smp["values"][k]]
    for lid in smp["location_ids"][:24]:
        loc = prof.locations.get(lid)
        if loc is None:
            out.append("  <missing location %d>" % lid)
            continue
        m = prof.mappings.get(loc["mapping_id"])
        why = heaptap_reasons(prof, loc, ranges)
        out.append("  %-40s 0x%x %s%s" % (
            " / ".join(loc_names(prof, loc)), loc["address"],
            os.path.basename(m["filename"]) if m else "-",
            ("   <<< HEAPTAP (%s)" % ", ".join(why)) if why else ""))
    return "\n".join(out)


def owner(prof, smp):
    """The first program function from the leaf, which names the entry point."""
    for n in prof.stack(smp):
        for fn in ENTRY:
            if htlib.fn_matches(n, fn):
                return fn
    return OTHER


def check_no_heaptap_frames(ctx, prof, ranges, tag, kind, must_have=()):
    """(a): per program function, no sample through it holds a heaptap frame."""
    k = 0 if kind == "threads" else prof.index("alloc_space")
    groups = {fn: [] for fn in must_have}
    for smp in prof.samples:
        groups.setdefault(owner(prof, smp), []).append(smp)
    for fn in sorted(groups):
        smps = groups[fn]
        bad = [s for s in smps
               if any(heaptap_reasons(prof, prof.locations[lid], ranges)
                      for lid in s["location_ids"] if lid in prof.locations)]
        detail = "%d of %d samples hold heaptap frames:\n%s" % (
            len(bad), len(smps), "\n".join(describe(prof, s, ranges, k) for s in bad[:3]))
        ctx.check(not bad, "%s%s: no heaptap frame in stacks through %s [%s] (%d samples)" % (
            tag, kind, fn, ENTRY.get(fn, "other allocations"), len(smps)), detail)


def check_leaf_counts(ctx, prof, expects, tag):
    """(b): exact per-leaf figures at rate 1; on a mismatch, where the blocks went."""
    htlib.compare_expects(ctx, prof, expects, mode="leaf", label=tag + "heap leaf ")
    for fn, want in sorted(expects.items()):
        got = {st: prof.leaf_total(st, fn) for st in want}
        if got == want:
            continue
        k = prof.index("alloc_objects")
        leaves = {}
        for s in prof.samples_with(fn):
            leaf = prof.stack(s)[0]
            leaves[leaf] = leaves.get(leaf, 0) + s["values"][k]
        ctx.note("%s%s [%s]: leaf has %s, want %s; anywhere in the stack: %d alloc_objects "
                 "(want %d) under leaves %s\n%s" % (
                     tag, fn, ENTRY.get(fn, "?"), got, want,
                     prof.anywhere_total("alloc_objects", fn), want["alloc_objects"], leaves,
                     htlib.dump_stacks(prof, fn, "alloc_space", limit=4)))


def check_counted_once(ctx, prof, expects, tag):
    """Each block once: the totals of the samples with fn anywhere in the stack
    are the expected ones too. A block sampled a second time (an entry point
    that reaches another through the PLT, each wrapper taking a sample) has
    the right leaf once and a heaptap leaf once; the leaf check alone misses
    it."""
    for fn, want in sorted(expects.items()):
        got = {st: prof.anywhere_total(st, fn) for st in want}
        ctx.check(got == want, "%sheap: %s's blocks counted once [%s]" % (
            tag, fn, ENTRY.get(fn, "?")), "totals through %s are %s, want %s\n%s" % (
                fn, got, want, htlib.dump_stacks(prof, fn, "alloc_space", limit=12)))


def check_threads(ctx, tp, out, tag):
    """(c): thread counts by spawner, nested creation stacks, main once, total."""
    htlib.check_thread_shape(ctx, tp)
    leaf, anywhere = parse_thread_expects(out)
    ctx.check(leaf and anywhere, tag + "program printed thread expectations")
    dump = htlib.dump_stacks(tp, None, "threads", limit=30)
    for fn, want in sorted(leaf.items()):
        got = tp.leaf_total("threads", fn)
        ctx.check(got == want, "%sthreads: %d live threads created at leaf %s [%s]" % (
            tag, want, fn, ENTRY.get(fn, "?")), "profile has %d\n%s" % (got, dump))
    for fn, want in sorted(anywhere.items()):
        got = tp.anywhere_total("threads", fn)
        ctx.check(got == want, "%sthreads: %d live threads with %s in the creation stack" % (
            tag, want, fn), "profile has %d\n%s" % (got, dump))
    for fn, creator in sorted(CREATOR.items()):
        stacks = [tp.stack(s) for s in tp.samples if tp.stack(s) and tp.stack(s)[0] == fn]
        ctx.check(stacks and all(len(st) > 1 and st[1] == creator for st in stacks),
                  "%sthreads: %s's creation stacks are %s <- %s <- ..." % (tag, fn, fn, creator),
                  htlib.dump_stacks(tp, fn, "threads"))
    main = sum(s["values"][0] for s in tp.samples
               if "main" in s["labels"].get("origin", []) or tp.stack(s) == ["[main thread]"])
    ctx.check(main == 1, tag + "threads: the main thread counts once", "%d\n%s" % (main, dump))
    want = next((int(l.split("=")[1]) for l in out if l.startswith("threads_live=")), -1)
    ctx.check(tp.total("threads") == want, "%sthreads: total %d live threads" % (tag, want),
              "profile has %d\n%s" % (tp.total("threads"), dump))


def run_variant(ctx, prog, variant, base_expects):
    for rate in ("1", None):
        tag = "%s rate %s: " % (variant, rate or "default")
        d = ctx.tmpdir("frames")
        p = rlib.run(ctx, [prog], outdir=d, env={"HEAPTAP_RATE": rate} if rate else {},
                     timeout=60)
        v = p.values()
        ctx.check(p.returncode == 0 and v.get("done") == "1" and v.get("dump") == "0",
                  tag + "runs to the end under heaptap, dump written", p.transcript())
        ctx.check(not p.heaptap_lines(), tag + "heaptap says nothing", str(p.heaptap_lines()))
        ranges, files = parse_ranges(p.out)
        ctx.check(ranges["own"], tag + "the program found libheaptap.so's executable ranges",
                  p.transcript())
        if not ranges["own"]:
            continue
        ctx.note("%slibheaptap %s %s; libunwind %s %s" % (
            tag, files.get("own"), ["%x-%x" % r for r in ranges["own"]], files.get("unwind"),
            ["%x-%x" % r for r in ranges["unwind"]]))
        expects = htlib.parse_expects(p.out)
        ctx.check(expects and expects == base_expects,
                  tag + "the program holds the same with and without heaptap",
                  "with %s\nwithout %s" % (expects, base_expects))
        finals = check_outdir(ctx, d, tag)
        if (p.pid, 1) not in finals:
            ctx.check(False, tag + "dump 1 written", str(sorted(finals)))
            continue
        prof = ctx.decode(finals[(p.pid, 1)]["heap"])
        tp = ctx.decode(finals[(p.pid, 1)]["threads"])
        check_no_heaptap_frames(ctx, prof, ranges, tag, "heap", must_have=expects)
        check_no_heaptap_frames(ctx, tp, ranges, tag, "threads",
                                must_have=parse_thread_expects(p.out)[0])
        if rate == "1":
            check_leaf_counts(ctx, prof, expects, tag)
            check_counted_once(ctx, prof, expects, tag)
        else:
            # Each function made an 8 MiB block (missed with probability
            # e^-16): the frame checks above saw stacks through all of them.
            missing = [fn for fn in sorted(expects) if not prof.samples_with(fn)]
            ctx.check(not missing, tag + "every function was sampled at least once",
                      "none through %s\n%s" % (missing, htlib.dump_stacks(prof, limit=30)))
        check_threads(ctx, tp, p.out, tag)


def body(ctx):
    ctx.need_protoc()
    variants = [(v, ctx.example("rel_frames_" + v)) for v in REQUIRED]
    for v in OPTIONAL:
        path = os.path.join(ctx.bindir, "rel_frames_" + v)
        if os.path.exists(path):
            variants.append((v, path))
        else:
            ctx.note("rel_frames_%s not built (no LTO in this toolchain): skipped" % v)
    for variant, prog in variants:
        base = rlib.baseline(ctx, [prog], variant + " ")
        bv = base.values()
        ctx.check(bv.get("realloc_moved") == "1",
                  "%s without heaptap: ep_realloc_move's realloc moved the block" % variant,
                  base.transcript())
        ctx.check(not parse_ranges(base.out)[0]["own"],
                  "%s without heaptap: no libheaptap loaded" % variant, base.transcript())
        run_variant(ctx, prog, variant, base.expects())


if __name__ == "__main__":
    rlib.main(body, __doc__)
