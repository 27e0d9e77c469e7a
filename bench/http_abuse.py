#!/usr/bin/env python3
"""bench/http_abuse.py - does serving /debug/pprof cost the application anything?

The application is bench_malloc (malloc+free pair cost, one thread, 64 B
and 4 KiB, pinned to all CPUs but the last; the clients run on the last) under heaptap at the default rate, in three configurations,
interleaved (A B C A B C ...) within one invocation:

  listener-off    HEAPTAP_HTTP unset
  listener-idle   HEAPTAP_HTTP=127.0.0.1:PORT, nobody connects
  listener-abuse  the same, while this script hammers the port: 2 scrapers
                  fetching heap, allocs and threads back to back, 16
                  slow-drip clients, bursts of 200 connections, malformed
                  requests and clients that hang up mid-response
  decoy-abuse     HEAPTAP_HTTP unset, and the same clients hammer a decoy
                  server in this script (it answers 503 at once): the load
                  the clients and the kernel put on the machine, without
                  heaptap serving. abuse / decoy is what serving costs.

Printed: the median ns per pair of each cell and configuration, and the
ratio to listener-off (median of per-repetition ratios). After the abuse run
the script checks heaptap still answers (a plain GET gets 200).

Usage: bench/http_abuse.py --build BUILD_DIR [--reps N] [--ms MS] [--out FILE]
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time


NCPU = os.cpu_count() or 1
APP_CPUS = set(range(max(1, NCPU - 1)))
CLIENT_CPUS = {NCPU - 1}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Decoy:
    """A listener that answers every request with 503 at once."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(0.05)
                try:
                    c.recv(8192)
                except OSError:
                    pass
                c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\n\r\n")
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop.set()
        self.t.join(5)
        self.sock.close()


class Abuser:
    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.threads = []
        self.counts = {"scrapes": 0, "busy": 0, "errors": 0}
        self.lock = threading.Lock()

    def count(self, k):
        with self.lock:
            self.counts[k] += 1

    def conn(self, timeout=5):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def scraper(self):
        paths = ["/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/threads",
                 "/debug/pprof/heap?debug=1"]
        i = 0
        while not self.stop.is_set():
            try:
                s = self.conn()
                s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % paths[i % 4]).encode())
                data = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    data += b
                s.close()
                self.count("scrapes" if data.startswith(b"HTTP/1.1 200") else "busy")
            except OSError:
                self.count("errors")
            i += 1

    def dripper(self):
        while not self.stop.is_set():
            try:
                s = self.conn(timeout=20)
                for ch in b"GET /debug/pprof/heap HTTP/1.1\r\n":
                    if self.stop.is_set():
                        break
                    s.send(bytes([ch]))
                    time.sleep(0.5)
                s.close()
            except OSError:
                time.sleep(0.1)

    def burster(self):
        while not self.stop.is_set():
            socks = []
            for _ in range(200):
                try:
                    socks.append(self.conn(timeout=2))
                except OSError:
                    break
            for k, s in enumerate(socks):
                try:
                    if k % 3 == 0:
                        s.send(b"\x00\xff garbage\r\n\r\n")
                    elif k % 3 == 1:
                        s.send(b"GET /debug/pprof/heap HTTP/1.1\r\n\r\n")
                    s.close()  # hang up, maybe mid-response
                except OSError:
                    pass
            time.sleep(0.2)

    def start(self):
        for fn, n in ((self.scraper, 2), (self.dripper, 16), (self.burster, 1)):
            for _ in range(n):
                t = threading.Thread(target=fn, daemon=True)
                t.start()
                self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def run_once(args, lib, port, config):
    env = dict(os.environ, LD_PRELOAD=lib, HEAPTAP_DIR=args.tmp)
    env.pop("HEAPTAP_HTTP", None)
    if config.startswith("listener-") and config != "listener-off":
        env["HEAPTAP_HTTP"] = "127.0.0.1:%d" % port
    decoy = Decoy(port) if config == "decoy-abuse" else None
    argv = [os.path.join(args.build, "bench", "bench_malloc"), str(args.ms), "64,4096", "1"]
    # The application on the first CPUs, the abusing clients on the last one:
    # what is measured is what serving costs the application (heaptap's thread
    # lives in the application and shares its CPUs), not the clients' own CPU.
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: os.sched_setaffinity(0, APP_CPUS))
    abuser = None
    if config in ("listener-abuse", "decoy-abuse"):
        # Wait for the listener, then hammer it for the whole run.
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        abuser = Abuser(port)
        abuser.start()
    out, err = p.communicate(timeout=600)
    counts = None
    if abuser:
        abuser.finish()
        counts = abuser.counts if config == "listener-abuse" else None
    if decoy:
        decoy.close()
    if p.returncode != 0:
        sys.exit("bench_malloc failed under %s: %s" % (config, err.decode()))
    res = {}
    for line in out.decode().splitlines():
        if not line.startswith("RESULT "):
            continue
        kv = dict(f.split("=", 1) for f in line[7:].split() if "=" in f)
        if "value" in kv:
            res["size=%s threads=%s" % (kv.get("size"), kv.get("threads"))] = float(kv["value"])
    return res, counts


def still_answers(args, lib, port):
    """After abuse: a fresh program's listener answers, and so did the last."""
    env = dict(os.environ, LD_PRELOAD=lib, HEAPTAP_DIR=args.tmp,
               HEAPTAP_HTTP="127.0.0.1:%d" % port)
    p = subprocess.Popen(["sleep", "5"], env=env)
    ok = False
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /debug/pprof/threads HTTP/1.1\r\n\r\n")
            ok = s.recv(64).startswith(b"HTTP/1.1 200")
            s.close()
            break
        except OSError:
            time.sleep(0.05)
    p.kill()
    p.wait()
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ms", type=int, default=300, help="time per bench_malloc cell")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.tmp = "/tmp/heaptap-http-bench.%d" % os.getpid()
    os.sched_setaffinity(0, CLIENT_CPUS)
    os.makedirs(args.tmp, exist_ok=True)
    lib = os.path.join(args.build, "libheaptap.so")
    configs = ["listener-off", "listener-idle", "listener-abuse", "decoy-abuse"]
    data = {c: [] for c in configs}
    counts = []
    for rep in range(args.reps):
        port = free_port()
        for c in configs:
            res, cnt = run_once(args, lib, port, c)
            data[c].append(res)
            if cnt:
                counts.append(cnt)
        print("rep %d done" % (rep + 1), file=sys.stderr)
    cells = sorted(data["listener-off"][0])
    lines = ["| cell | " + " | ".join(configs) + " | idle / off | abuse / off | abuse / decoy |",
             "|---|" + "---|" * (len(configs) + 3)]
    for cell in cells:
        med = {c: statistics.median(r[cell] for r in data[c]) for c in configs}
        ratio = {c: statistics.median(data[c][i][cell] / data["listener-off"][i][cell]
                                      for i in range(args.reps)) for c in configs}
        vs_decoy = statistics.median(data["listener-abuse"][i][cell] / data["decoy-abuse"][i][cell]
                                     for i in range(args.reps))
        lines.append("| %s | %s | %.3f | %.3f | %.3f |" % (
            cell, " | ".join("%.1f ns" % med[c] for c in configs),
            ratio["listener-idle"], ratio["listener-abuse"], vs_decoy))
    port = free_port()
    answers = still_answers(args, lib, port)
    tot = {k: sum(c[k] for c in counts) for k in ("scrapes", "busy", "errors")}
    text = "\n".join(lines) + (
        "\n\nabuse: %d profiles served in full, %d answered 503 (connections full), "
        "%d client-side errors; afterwards a new listener answers: %s\n" %
        (tot["scrapes"], tot["busy"], tot["errors"], "yes" if answers else "NO"))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if answers else 1


if __name__ == "__main__":
    sys.exit(main())
