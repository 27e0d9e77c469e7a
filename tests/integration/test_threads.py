#!/usr/bin/env python3
"""Thread profile: live threads by the stack that created them (issue 3).

examples/thread_leak starts a pool of 3 workers (start_pool) and one thread per
request (spawn_handler), one request in four never finishing; it dumps at five
points while threads come and go and prints, for each, the leaked handlers,
the pool size and its live tasks (heaptap's own threads left out). Each thread
profile must show exactly those counts per creation function, the main thread
once, and a total equal to the live tasks; the heap profile's comments must
carry the live thread count.
"""
import re

import htlib


def is_main(prof, smp):
    st = prof.stack(smp)
    return ("main" in smp["labels"].get("origin", []) or "[main thread]" in st or st == ["main"])


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("thread_leak")
    r = ctx.run([prog], timeout=120)
    ctx.check(r.returncode == 0, "thread_leak exits 0 under heaptap", r.transcript())
    dumps = []
    for line in r.stdout_lines:
        m = re.match(r"dump (\d+) rc=(-?\d+) handlers=(\d+) pool=(\d+) main=1 tasks=(-?\d+)", line)
        if m:
            dumps.append(tuple(int(x) for x in m.groups()))
    ctx.check(len(dumps) == 5, "thread_leak reports five dumps", r.stdout)

    for seq, rc, handlers, pool, tasks in dumps:
        tag = "dump %d: " % seq
        if not ctx.check(rc == 0, tag + "heaptap_dump() returned 0", "rc %d" % rc):
            continue
        ctx.check(tasks == 1 + pool + handlers, tag + "the program's own task count settled",
                  "tasks %d, expected %d" % (tasks, 1 + pool + handlers))
        heap, threads = r.profile_path(seq, "heap"), r.profile_path(seq, "threads")
        tp = ctx.decode(threads)
        if seq == 1:
            htlib.check_thread_shape(ctx, tp)
        got_handlers = tp.anywhere_total("threads", "spawn_handler")
        got_pool = tp.anywhere_total("threads", "start_pool")
        got_main = sum(s["values"][0] for s in tp.samples if is_main(tp, s))
        total = tp.total("threads")
        detail = "profile:\n" + htlib.dump_stacks(tp, sample_type="threads")
        ctx.check(got_handlers == handlers, tag + "spawn_handler has the %d leaked handlers" % handlers,
                  "got %d\n%s" % (got_handlers, detail))
        ctx.check(got_pool == pool, tag + "start_pool has the %d pool workers" % pool,
                  "got %d\n%s" % (got_pool, detail))
        ctx.check(got_main == 1, tag + "the main thread counts once", "got %d\n%s" % (got_main, detail))
        ctx.check(total == tasks, tag + "the total equals the live tasks (%d)" % tasks,
                  "got %d\n%s" % (total, detail))
        # The creation stack runs from pthread_create's caller up to main.
        for s in tp.samples_with("spawn_handler")[:1]:
            st = tp.stack(s)
            ctx.check(st[:3] == ["spawn_handler", "serve_batch", "main"],
                      tag + "handler creation stack is spawn_handler <- serve_batch <- main",
                      " <- ".join(st[:8]))
        hp = ctx.decode(heap)
        want = re.compile(r"thread.*\b%d\b" % tasks, re.I)
        ctx.check(any(want.search(c) for c in hp.comments),
                  tag + "heap profile comments carry the live threads (%d)" % tasks,
                  "comments: %s" % hp.comments)

    # Without heaptap the program runs the same.
    plain = ctx.run([prog], preload=False, timeout=120)
    ctx.check(plain.returncode == 0 and "heaptap absent" in plain.stdout,
              "thread_leak runs without heaptap", plain.transcript())


if __name__ == "__main__":
    htlib.main(body, __doc__)
