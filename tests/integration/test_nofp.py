#!/usr/bin/env python3
"""Stacks reach main in code built without frame pointers (DWARF unwinding).

Runs examples/leaky_server_nofp (-O2 -fomit-frame-pointer) at the default rate,
sends SIGUSR2 after the load phase, and checks that the leaking site,
remember_session(), holds the most memory and that its stacks run
remember_session <- handle_request <- serve <- main. The frame-pointer build
(leaky_server) is checked the same way, and go tool pprof -top must put
remember_session on top too.
"""
import signal

import htlib


def check_server(ctx, name):
    prog = ctx.example(name)
    r = ctx.start([prog, "--requests", "20000", "--idle", "30"])
    try:
        r.wait_line(r"^phase idle", timeout=120)
        r.send(signal.SIGUSR2)
        heap, threads = r.wait_profiles(1, timeout=30)
    finally:
        r.kill()
    prof = ctx.decode(heap)
    htlib.check_heap_shape(ctx, prof, rate=524288)
    htlib.check_no_drops(ctx, prof, "%s: " % name)
    top = prof.top("inuse_space", 5)
    ctx.check(top and top[0][0] == "remember_session", "%s: remember_session on top" % name,
              "top sites: %s" % top)
    samples = prof.samples_with("remember_session")
    ctx.check(samples, "%s: remember_session sampled" % name)
    full = [s for s in samples if prof.stack(s)[:4] ==
            ["remember_session", "handle_request", "serve", "main"]]
    ctx.check(samples and len(full) == len(samples),
              "%s: every remember_session stack is remember_session <- handle_request <- serve <- main"
              % name, "%d of %d; e.g.\n%s" % (len(full), len(samples),
                                               htlib.dump_stacks(prof, "remember_session", limit=5)))
    # The leak is ~78 MiB (2500 sessions of 32 KiB): the estimate should be near.
    leak = prof.leaf_total("inuse_space", "remember_session")
    ctx.check(0.7 * 78 * 2**20 < leak < 1.3 * 78 * 2**20,
              "%s: remember_session holds about 78 MiB" % name, "%.1f MiB" % (leak / 2**20))
    if htlib.have_go_pprof():
        rows, text = htlib.pprof_top(heap, "inuse_space")
        ctx.check(rows and rows[0][1] == "remember_session",
                  "%s: go tool pprof -top puts remember_session first" % name, text)


def body(ctx):
    ctx.need_protoc()
    check_server(ctx, "leaky_server_nofp")
    check_server(ctx, "leaky_server")


if __name__ == "__main__":
    htlib.main(body, __doc__)
