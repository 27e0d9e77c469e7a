#!/usr/bin/env python3
"""The /debug/pprof listener (issue 13), against real heaptap processes, loopback only.

tests/http_subject (built from tests/integration/http_subject.c) allocates only
when told on stdin, so between commands it is steady. Under HEAPTAP_RATE=1 and
HEAPTAP_HTTP=:0 it is checked for:

1. every row of the endpoint table (shared reference continuous-profiling.md
   section 2), by raw sockets for exact headers: status, Content-Type,
   Content-Disposition, Content-Length == body, Connection: close,
   X-Content-Type-Options: nosniff, X-Go-Pprof: 1 on errors, never
   Content-Encoding; Go's four `seconds` 400 strings; HEAD; /symbol GET and
   POST with the addresses of a served profile;
2. `go tool pprof -raw` on heap and on allocs?seconds=2 (no /symbol round trip
   failing); the window's alloc_space equals what paced_alloc() allocated in
   [time_nanos - duration_nanos, time_nanos], which the program logs
   allocation by allocation (CLOCK_REALTIME before and after each malloc);
3. sample identity (location addresses + labels) stable across scrapes;
4. abuse: malformed requests, 64 KiB of headers, slow-drip clients, 200
   concurrent connections, clients that leave mid-response, chunked and
   oversized bodies; after each, a normal request gets 200 and the program
   answers its next command;
5. process hygiene: loopback-only listener, none without HEAPTAP_HTTP,
   close-on-exec, closed in forked children, a port in use, a non-loopback
   address, bad values;
6. the README's Parca and Alloy configurations: every path they enable
   passes the scraper's own checks (Alloy: Content-Type application/
   octet-stream and a gzip body; Parca: exactly 200, non-empty; a delta only
   with duration_nanos set), and every default profile they would otherwise
   scrape is disabled.
"""
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request

import htlib

CACHE_S = 1.0  # HT_HTTP_CACHE_MS: a profile is built at most once a second
FRESH = CACHE_S + 0.2  # waited after the program changed, so the next scrape is built anew

GO_ERR = {
    "invalid": 'invalid value for "seconds" - must be a positive integer',
    "unsupported": '"seconds" parameter is not supported for this profile type',
    "timeout": "profile duration exceeds server's WriteTimeout",
    "debug": "seconds and debug params are incompatible",
}


# ---------------------------------------------------------------------------
# A raw HTTP client: exact bytes in, exact bytes out.

class Resp:
    def __init__(self, data, error=None, elapsed=0.0):
        self.data = data
        self.error = error
        self.elapsed = elapsed
        self.status = None
        self.reason = ""
        self.headers = {}
        self.header_lines = []
        self.body = b""
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) (.*)$", lines[0])
        if not m:
            return
        self.status = int(m.group(1))
        self.reason = m.group(2)
        self.header_lines = lines[1:]
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers.setdefault(k.strip().lower(), []).append(v.strip())
        self.body = body

    def h(self, name):
        v = self.headers.get(name.lower())
        return v[0] if v else None

    def __repr__(self):
        return "<%s %s, %d body bytes, error %r: %r>" % (
            self.status, self.reason, len(self.body), self.error, self.data[:300])


def raw(port, data, timeout=20, host="127.0.0.1", family=socket.AF_INET):
    """Send data, read to EOF. Keeps what came before an error (a reset after the
    response is still the response)."""
    t0 = time.monotonic()
    out = b""
    err = None
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        try:
            s.sendall(data)
        except OSError as e:
            err = e  # the server may answer before it has read it all
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except OSError as e:
        err = err or e
    finally:
        s.close()
    return Resp(out, err, time.monotonic() - t0)


def get(port, target, method="GET", headers=(), body=b"", **kw):
    req = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: heaptap-test\r\n" % (
        method, target, port)
    for h in headers:
        req += h + "\r\n"
    if body:
        req += "Content-Length: %d\r\n" % len(body)
    return raw(port, req.encode() + b"\r\n" + body, **kw)


class UrlResp(Resp):
    """A response as an ordinary HTTP client (urllib) gets it, as the scrapers do."""

    def __init__(self, status, headers, body, elapsed):
        Resp.__init__(self, b"")
        self.status = status
        self.headers = {}
        for k, v in headers:
            self.headers.setdefault(k.lower(), []).append(v)
        self.body = body
        self.elapsed = elapsed


def urlget(port, target, user_agent, timeout=30):
    t0 = time.monotonic()
    rq = urllib.request.Request("http://127.0.0.1:%d%s" % (port, target),
                                headers={"User-Agent": user_agent})
    try:
        with urllib.request.urlopen(rq, timeout=timeout) as f:
            return UrlResp(f.status, f.getheaders(), f.read(), time.monotonic() - t0)
    except urllib.error.HTTPError as e:
        return UrlResp(e.code, e.headers.items(), e.read(), time.monotonic() - t0)


# ---------------------------------------------------------------------------
# The subject program.

class Subject:
    def __init__(self, ctx, http=":0", extra_env=None, wait_port=True, rate=1):
        self.ctx = ctx
        env = {"HEAPTAP_RATE": rate}
        if http is not None:
            env["HEAPTAP_HTTP"] = http
        env.update(extra_env or {})
        prog = os.path.join(ctx.builddir, "tests", "http_subject")
        if not os.path.exists(prog):
            raise htlib.Failure("test program not built: %s" % prog)
        self.r = htlib.Run(ctx, [prog], env=env, outdir=ctx.tmpdir("http"), stdin=True)
        self.r.wait_line(r"^ready pid=")
        self.pid = self.r.pid
        self.port = None
        if wait_port:
            m = self.wait_stderr(r"^heaptap: serving /debug/pprof/ on http://(\S+):(\d+)/debug/pprof/$")
            self.port = int(m.group(2))

    def wait_stderr(self, pattern, timeout=10):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.r.stderr_lines):
                m = rx.search(line)
                if m:
                    return m
            time.sleep(0.02)
        self.r.timed_out("no stderr line matching %r within %ss" % (pattern, timeout))

    def send(self, text):
        """Send one command; return the index its output lines start at."""
        n = len(self.r.stdout_lines)
        self.r.proc.stdin.write((text + "\n").encode())
        self.r.proc.stdin.flush()
        return n

    def cmd(self, text, expect, timeout=30):
        """Send one command; wait for the stdout line matching expect; return the lines
        the program printed up to it."""
        return self.wait_out(self.send(text), expect, timeout, text)

    def wait_out(self, n, expect, timeout=30, text=""):
        """Wait for a stdout line from index n on matching expect."""
        rx = re.compile(expect)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.r.stdout_lines[n:]
            for i, line in enumerate(lines):
                if rx.search(line):
                    return lines[:i + 1]
            if self.r.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.r.timed_out("command %r: no line matching %r" % (text, expect))

    def alive(self):
        """The program still runs and answers a command."""
        if self.r.proc.poll() is not None:
            return False
        try:
            self.cmd("alloc 1 16", r"^alloc done$", timeout=10)
            return True
        except htlib.Failure:
            return False

    def exit(self):
        if self.r.proc.poll() is None:
            try:
                self.r.proc.stdin.write(b"exit\n")
                self.r.proc.stdin.flush()
            except OSError:
                pass
        return self.r.wait(30)


# ---------------------------------------------------------------------------
# Profiles.

def decode_bytes(ctx, data, tag):
    if not hasattr(ctx, "prof_dir"):
        ctx.prof_dir = ctx.tmpdir("prof")
    path = os.path.join(ctx.prof_dir, tag + ".pb.gz")
    with open(path, "wb") as f:
        f.write(data)
    return ctx.decode(path)


def identities(prof):
    """fastdelta's sample identity: the location addresses, then the labels."""
    out = []
    for smp in prof.samples:
        addrs = tuple(prof.locations[l]["address"] for l in smp["location_ids"])
        labels = tuple(sorted((k, tuple(v)) for k, v in smp["labels"].items()))
        out.append(((addrs, labels), tuple(smp["values"])))
    return out


def alloy_validate(resp):
    """Grafana Alloy's fetchProfile + validate.go (reference section 4)."""
    why = []
    if resp.status is None or not 200 <= resp.status < 300:
        why.append("status %s is not 2xx" % resp.status)
    if not resp.body:
        why.append("empty body")
    ct = resp.h("Content-Type")
    if not ct:
        why.append("no Content-Type")
    elif not ct.startswith("application/octet-stream"):
        why.append("Content-Type %r" % ct)
    b = resp.body.lstrip()
    if b[:1] in (b"<", b"{", b"["):
        why.append("HTML or JSON body")
    if resp.body[:2] != b"\x1f\x8b":
        wt = resp.body[0] & 7 if resp.body else None
        if wt in (6, 7):
            why.append("neither gzip nor protobuf (wire type %d)" % wt)
    return why


def parca_validate(resp):
    """Parca's scrape loop: exactly 200 and a non-empty body (reference section 3)."""
    why = []
    if resp.status != 200:
        why.append("status %s is not 200" % resp.status)
    if not resp.body:
        why.append("empty body")
    return why


def common_headers(ctx, resp, what, seen_encodings):
    """Headers every response carries."""
    h = resp.headers
    ok = (resp.status is not None and h.get("connection") == ["close"]
          and h.get("x-content-type-options") == ["nosniff"]
          and len(h.get("content-length", [])) == 1)
    ctx.check(ok, "%s: Connection: close, X-Content-Type-Options: nosniff, one Content-Length" % what,
              repr(resp))
    if "content-encoding" in h:
        seen_encodings.append(what)


# ---------------------------------------------------------------------------

def body(ctx):
    ctx.need_protoc()
    t_start = time.monotonic()
    seen_enc = []  # responses that carried Content-Encoding (none may)
    all_resps = []

    s = Subject(ctx)
    port = s.port
    ctx.note("subject pid %d serves on 127.0.0.1:%d" % (s.pid, port))
    s.cmd("alloc 100 4096", r"^alloc done$")
    s.cmd("alloc 50 1000", r"^alloc done$")

    def req(target, method="GET", **kw):
        r = get(port, target, method=method, **kw)
        all_resps.append((method + " " + target, r))
        return r

    def check_length(r, what, head=False):
        cl = r.h("Content-Length")
        if head:
            return ctx.check(r.body == b"" and cl is not None and int(cl) > 0,
                             "%s: headers only, Content-Length %s" % (what, cl), repr(r))
        return ctx.check(cl is not None and int(cl) == len(r.body),
                         "%s: Content-Length equals the body (%d)" % (what, len(r.body)), repr(r))

    def check_error(r, status, msg, what):
        ctx.check(r.status == status and r.body == (msg + "\n").encode()
                  and r.h("Content-Type") == "text/plain; charset=utf-8"
                  and r.h("X-Go-Pprof") == "1" and r.h("Content-Disposition") is None,
                  "%s: %d %r, text/plain, X-Go-Pprof: 1" % (what, status, msg), repr(r))
        check_length(r, what)

    # ---- 1. the endpoint table --------------------------------------------
    r = req("/debug/pprof/")
    ctx.check(r.status == 200 and r.h("Content-Type") == "text/html; charset=utf-8",
              "index: 200 text/html; charset=utf-8", repr(r))
    for link in ("heap?debug=1", "allocs?debug=1", "threads?debug=1"):
        ctx.check(("href='%s'" % link).encode() in r.body, "index links %s" % link, r.body[:400])
    check_length(r, "index")
    rh = req("/debug/pprof/", method="HEAD")
    ctx.check(rh.status == 200 and rh.body == b"" and rh.h("Content-Length") == r.h("Content-Length"),
              "HEAD index: 200, no body, the GET's Content-Length", repr(rh))

    r = req("/debug/pprof")
    ctx.check(r.status == 301 and r.h("Location") == "/debug/pprof/",
              "/debug/pprof: 301 to /debug/pprof/", repr(r))
    check_length(r, "/debug/pprof 301")

    now_ns = time.time_ns()
    profiles = {}
    for name, dflt in (("heap", "inuse_space"), ("allocs", "alloc_space")):
        r = req("/debug/pprof/" + name)
        ok = ctx.check(r.status == 200 and r.h("Content-Type") == "application/octet-stream"
                       and r.h("Content-Disposition") == 'attachment; filename="%s"' % name
                       and r.body[:2] == b"\x1f\x8b",
                       "%s: 200 application/octet-stream, attachment; filename=\"%s\", gzip" % (name, name),
                       repr(r))
        check_length(r, name)
        if not ok:
            continue
        p = decode_bytes(ctx, r.body, name)
        profiles[name] = p
        profiles[name + "_len"] = len(r.body)
        ctx.check(p.default_sample_type == dflt, "%s: default_sample_type %s" % (name, dflt),
                  "got %r" % p.default_sample_type)
        ctx.check(p.sample_types == [("alloc_objects", "count"), ("alloc_space", "bytes"),
                                     ("inuse_objects", "count"), ("inuse_space", "bytes")]
                  and p.period_type == ("space", "bytes") and p.period == 1,
                  "%s: Go's sample types, period_type space/bytes, period = rate 1" % name,
                  "%s %s %s" % (p.sample_types, p.period_type, p.period))
        ctx.check(abs(p.time_nanos - now_ns) < 10e9 and not p.duration_nanos,
                  "%s: time_nanos is wall-clock time, no duration_nanos" % name,
                  "time_nanos %d vs now %d, duration %d" % (p.time_nanos, now_ns, p.duration_nanos))
        ctx.check(p.mappings and all(m["has_functions"] for m in p.mappings.values()
                                     if any(l["mapping_id"] == m["id"] and l["lines"]
                                            for l in p.locations.values())),
                  "%s: mappings with symbolized locations are marked has_functions" % name,
                  str(p.mappings))
        ctx.check(p.locations and all(l["address"] for l in p.locations.values()),
                  "%s: every location has an address" % name)
        got = p.leaf_total("alloc_space", "keep_block")
        want = 100 * 4096 + 50 * 1000
        ctx.check(got == want, "%s: keep_block alloc_space %d" % (name, want),
                  "got %d\n%s" % (got, htlib.dump_stacks(p)))
    rh = req("/debug/pprof/heap", method="HEAD")
    gl = profiles.get("heap_len", 0)
    ctx.check(rh.status == 200 and rh.body == b"" and rh.h("Content-Type") == "application/octet-stream"
              and int(rh.h("Content-Length") or 0) > 100,
              "HEAD heap: 200, headers only, Content-Length %s (GET: %d)" % (rh.h("Content-Length"), gl),
              repr(rh))

    r = req("/debug/pprof/threads")
    ok = ctx.check(r.status == 200 and r.h("Content-Type") == "application/octet-stream"
                   and r.h("Content-Disposition") == 'attachment; filename="threads"'
                   and r.body[:2] == b"\x1f\x8b",
                   "threads: 200 application/octet-stream, filename=\"threads\", gzip", repr(r))
    check_length(r, "threads")
    if ok:
        tp = decode_bytes(ctx, r.body, "threads")
        htlib.check_thread_shape(ctx, tp)
        ctx.check(tp.total("threads") == 1, "threads: the subject's one thread", str(tp.samples))

    for name in ("heap", "allocs"):
        r = req("/debug/pprof/%s?debug=1" % name)
        ctx.check(r.status == 200 and r.h("Content-Type") == "text/plain; charset=utf-8"
                  and r.body.startswith(b"heap profile: ") and b"keep_block" in r.body
                  and r.h("Content-Disposition") is None,
                  "%s?debug=1: text/plain; charset=utf-8, 'heap profile:' header, keep_block" % name,
                  repr(r))
        check_length(r, name + "?debug=1")
        ctx.check(all(b < 0x80 for b in r.body) and b"\x1f\x8b" not in r.body,
                  "%s?debug=1 is text only (no profile bytes after it)" % name)
    r = req("/debug/pprof/threads?debug=1")
    ctx.check(all(b < 0x80 for b in r.body) and b"\x1f\x8b" not in r.body,
              "threads?debug=1 is text only (no profile bytes after it)")
    if htlib.have_go_pprof():
        tpath = os.path.join(ctx.tmpdir("threads-text"), "threads.txt")
        with open(tpath, "wb") as f:
            f.write(r.body)
        try:
            out = htlib.go_pprof(["-top"], tpath)
            ctx.check("Type: threads" in out,
                      "go tool pprof reads threads?debug=1 (legacy count format)", out[-400:])
        except htlib.Failure as e:
            ctx.check(False, "go tool pprof reads threads?debug=1 (legacy count format)", str(e))
    ctx.check(r.status == 200 and r.h("Content-Type") == "text/plain; charset=utf-8"
              and r.body.startswith(b"threads profile: total 1\n"),
              "threads?debug=1: 'threads profile: total 1'", repr(r))
    check_length(r, "threads?debug=1")
    rh = req("/debug/pprof/threads?debug=1", method="HEAD")
    ctx.check(rh.status == 200 and rh.body == b"" and rh.h("Content-Length") == r.h("Content-Length"),
              "HEAD threads?debug=1: headers only, the GET's Content-Length", repr(rh))
    # Go's quirks: junk debug counts as 0, empty seconds means no delta, gc is accepted.
    for q in ("debug=junk", "seconds=", "gc=1", "unknown=1&debug=0"):
        r = req("/debug/pprof/heap?" + q)
        ctx.check(r.status == 200 and r.h("Content-Disposition") == 'attachment; filename="heap"'
                  and r.body[:2] == b"\x1f\x8b", "heap?%s: the plain profile" % q, repr(r))

    # The four seconds errors, Go's strings and order.
    for target, key in (("heap?seconds=abc", "invalid"), ("heap?seconds=0", "invalid"),
                        ("allocs?seconds=-5", "invalid"), ("threads?seconds=abc", "invalid"),
                        ("threads?seconds=1", "unsupported"), ("heap?seconds=300", "timeout"),
                        ("allocs?seconds=100000", "timeout"), ("heap?seconds=1&debug=1", "debug"),
                        ("allocs?debug=2&seconds=5", "debug")):
        check_error(req("/debug/pprof/" + target), 400, GO_ERR[key], target)
    rh = req("/debug/pprof/heap?seconds=abc", method="HEAD")
    ctx.check(rh.status == 400 and rh.body == b""
              and rh.h("Content-Length") == str(len(GO_ERR["invalid"]) + 1),
              "HEAD heap?seconds=abc: 400 headers only, the error's Content-Length", repr(rh))

    # 404s.
    for name in ("profile", "trace", "block", "mutex", "goroutine", "threadcreate", "cmdline",
                 "nonsense", "heap/", "../etc/passwd"):
        check_error(req("/debug/pprof/" + name), 404, "Unknown profile", name)
    for path in ("/", "/metrics", "/debug/pprofx", "/debug/", "/DEBUG/PPROF/heap"):
        r = req(path)
        ctx.check(r.status == 404 and r.h("X-Go-Pprof") == "1"
                  and r.h("Content-Type") == "text/plain; charset=utf-8",
                  "%s: 404 (outside /debug/pprof/)" % path, repr(r))
        check_length(r, path)
    for m in ("DELETE", "PUT", "OPTIONS"):
        r = req("/debug/pprof/heap", method=m)
        ctx.check(r.status == 405 and r.h("X-Go-Pprof") == "1", "%s heap: 405" % m, repr(r))
        check_length(r, m)

    # /symbol: GET, then POST with a served profile's addresses.
    r = req("/debug/pprof/symbol")
    ctx.check(r.status == 200 and r.body == b"num_symbols: 1\n"
              and r.h("Content-Type") == "text/plain; charset=utf-8",
              "symbol GET: 200 'num_symbols: 1'", repr(r))
    rh = req("/debug/pprof/symbol", method="HEAD")
    ctx.check(rh.status == 200 and rh.body == b"" and rh.h("Content-Length") == "15",
              "HEAD symbol: headers only, Content-Length 15", repr(rh))
    hp = profiles.get("heap")
    if hp:
        locs = [l for l in hp.locations.values() if l["lines"]]
        names = {l["address"]: {hp.functions[f]["name"] for f, _ in l["lines"]} for l in locs}
        want = sorted(names)
        post = "+".join("0x%x" % a for a in want).encode()
        r = req("/debug/pprof/symbol", method="POST", body=post)
        got = {}
        lines = r.body.decode("utf-8", "replace").splitlines()
        for line in lines[1:]:
            a, _, n = line.partition(" ")
            got[int(a, 16)] = n
        ctx.check(r.status == 200 and lines[:1] == ["num_symbols: 1"],
                  "symbol POST: 200 'num_symbols: 1' first", repr(r))
        bad = [(hex(a), got.get(a), sorted(names[a])) for a in want if got.get(a) not in names[a]]
        ctx.check(not bad and len(got) == len(want),
                  "symbol POST: all %d addresses of the heap profile resolve to its function names"
                  % len(want), "mismatches %s" % bad[:8])
        a = want[0]
        r = req("/debug/pprof/symbol?0x%x" % a)
        ctx.check(r.status == 200 and r.body.decode().splitlines()[1:2] == ["0x%x %s" % (a, got.get(a))],
                  "symbol GET ?0xADDR resolves it", repr(r))

    for what, r in all_resps:
        common_headers(ctx, r, what, seen_enc)
    all_resps.clear()

    # ---- 3. stable sample identity ----------------------------------------
    # Scrapes a second apart, each built anew (heaptap serves a body built less
    # than a second ago again): their time_nanos differ.
    scr = []
    for i in range(2):
        time.sleep(FRESH)
        r = req("/debug/pprof/allocs")
        scr.append(decode_bytes(ctx, r.body, "steady%d" % i))
    ctx.check(scr[1].time_nanos - scr[0].time_nanos >= CACHE_S * 1e9,
              "two scrapes a second apart are built anew (time_nanos %+.2f s)"
              % ((scr[1].time_nanos - scr[0].time_nanos) / 1e9))
    a, b = identities(scr[0]), identities(scr[1])
    ctx.check(sorted(x[0] for x in a) == sorted(x[0] for x in b) and len(a) > 3,
              "two scrapes of the steady program: the same %d sample identities" % len(a),
              "first %s\nsecond %s" % (a, b))
    ctx.check(sorted(a) == sorted(b), "two scrapes of the steady program: the same values")
    ctx.check(all(len(x[0][0]) > 0 for x in a) and len({x[0] for x in a}) == len(a),
              "sample identities are distinct and have addresses")
    s.cmd("alloc 100 4096", r"^alloc done$")
    s.cmd("alloc 50 1000", r"^alloc done$")
    time.sleep(FRESH)
    r = req("/debug/pprof/allocs")
    p3 = decode_bytes(ctx, r.body, "steady3")
    c = dict((k, v) for k, v in identities(p3))
    missing = [k for k, _ in a if k not in c]
    ctx.check(not missing,
              "after more allocations of the same sizes, every earlier sample keeps its identity",
              "missing %s" % missing[:5])
    kb = p3.leaf_total("alloc_space", "keep_block")
    ctx.check(kb == 2 * (100 * 4096 + 50 * 1000), "... and keep_block's alloc_space doubled",
              "got %d" % kb)
    # Alloy's fastdelta on the scrape pair: keep_block's two samples only.
    prev = dict(identities(scr[1]))
    k = scr[1].index("alloc_space")
    deltas = {key: vals[k] - prev[key][k] for key, vals in c.items()
              if key in prev and vals[k] != prev[key][k]}
    ctx.check(sorted(deltas.values()) == [50 * 1000, 100 * 4096],
              "scrape-to-scrape alloc_space delta (Alloy's fastdelta) is the new allocations only",
              str(deltas))

    # ---- 2. go tool pprof --------------------------------------------------
    have_go = htlib.have_go_pprof()
    if not have_go:
        ctx.note("go tool pprof not found: its checks are skipped")
    else:
        genv = htlib.go_env()
        g = subprocess.run(["go", "tool", "pprof", "-raw", "http://127.0.0.1:%d/debug/pprof/heap" % port],
                           env=genv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        err = g.stderr.decode("utf-8", "replace")
        out = g.stdout.decode("utf-8", "replace")
        ctx.check(g.returncode == 0 and "keep_block" in out and "symbol" not in err.lower()
                  and "fail" not in err.lower(),
                  "go tool pprof -raw URL/heap reads the profile, no symbol round trip failing",
                  "exit %d\n%s\n%s" % (g.returncode, err, out[:1500]))

    # allocs?seconds=2 while paced_alloc allocates 10000 bytes every 10 ms.
    SIZE, RATE = 10000, 100
    n0 = s.send("pace %d %d 4" % (SIZE, RATE))
    time.sleep(0.8)
    w0 = time.time_ns()
    delta_raw = None
    if have_go:
        g = subprocess.run(["go", "tool", "pprof", "-raw",
                            "http://127.0.0.1:%d/debug/pprof/allocs?seconds=2" % port],
                           env=genv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        w1 = time.time_ns()
        err = g.stderr.decode("utf-8", "replace")
        ctx.check(g.returncode == 0 and "symbol" not in err.lower() and "paced_alloc" in g.stdout.decode(),
                  "go tool pprof -raw 'URL/allocs?seconds=2' reads the delta",
                  "exit %d\n%s" % (g.returncode, err))
        m = re.search(r"Saved profile in (\S+)", err)
        if m:
            with open(m.group(1), "rb") as f:
                delta_raw = f.read()
    else:
        r = req("/debug/pprof/allocs?seconds=2", timeout=30)
        w1 = time.time_ns()
        ctx.check(r.status == 200 and r.h("Content-Disposition") == 'attachment; filename="allocs-delta"',
                  "allocs?seconds=2: 200, filename=\"allocs-delta\"", repr(r))
        delta_raw = r.body
    lines = s.wait_out(n0, r"^pace done n=\d+$", timeout=30)
    allocs = [tuple(int(x) for x in l.split()[1:]) for l in lines if l.startswith("a ")]
    if delta_raw:
        d = decode_bytes(ctx, delta_raw, "delta")
        ctx.check(2.0e9 <= d.duration_nanos <= 2.3e9, "delta: duration_nanos ~ 2e9",
                  "got %d" % d.duration_nanos)
        ctx.check(w0 <= d.time_nanos <= w1, "delta: time_nanos is the window's end, wall clock",
                  "%d not in [%d, %d]" % (d.time_nanos, w0, w1))
        end = d.time_nanos
        start = end - d.duration_nanos
        inside = sum(1 for b0, b1 in allocs if b0 > start and b1 < end)
        edge = sum(1 for b0, b1 in allocs if not (b1 < start or b0 > end) and not (b0 > start and b1 < end))
        bracket = sum(1 for b0, b1 in allocs if b0 >= w0 and b1 <= w1)
        got = d.leaf_total("alloc_space", "paced_alloc")
        gobj = d.leaf_total("alloc_objects", "paced_alloc")
        # Each end of the window is read from the clock just after the rows were
        # taken; an allocation in that gap (microseconds, against 10 ms pacing)
        # counts on the other side: one allocation of slack per end.
        lo, hi = (inside - 1) * SIZE, (inside + edge + 1) * SIZE
        ctx.check(lo <= got <= hi and got == gobj * SIZE,
                  "delta: paced_alloc alloc_space %d = what it allocated in the window "
                  "(%d allocations inside, %d on an edge)" % (got, inside, edge),
                  "want %d..%d, got %d (%d objects)\n%s"
                  % (lo, hi, got, gobj, htlib.dump_stacks(d, sample_type="alloc_space")))
        # Pacing catches up after a late wake-up, so even a loaded machine stays close.
        ctx.check(got <= bracket * SIZE and abs(got - 2 * RATE * SIZE) <= 0.1 * 2 * RATE * SIZE,
                  "delta: within the request's bracket (%d allocations) and ~2 s x %d/s" % (bracket, RATE),
                  "got %d" % got)
        ctx.check(d.leaf_total("inuse_space", "paced_alloc") == got,
                  "delta: inuse_space differenced too (the blocks are kept)")
        ctx.check(d.leaf_total("alloc_space", "keep_block") == 0,
                  "delta: unchanged stacks are dropped (zero samples)",
                  htlib.dump_stacks(d, sample_type="alloc_space"))

    # ---- 6. scrapers -------------------------------------------------------
    cfg = readme_configs(ctx)
    for who, paths in (("parca", cfg["parca"]), ("alloy", cfg["alloy"])):
        for path, delta in paths:
            target = path + ("?seconds=1" if delta and who == "parca" else "")
            r = urlget(port, target, "conprof/v0.0.0" if who == "parca" else "Alloy/v1.0.0")
            why = parca_validate(r) if who == "parca" else alloy_validate(r)
            ctx.check(not why, "%s scrapes %s (README config): accepted" % (who, target),
                      "; ".join(why) or repr(r))
            if not why and who == "parca":
                p = decode_bytes(ctx, r.body, "parca")
                ctx.check(bool(p.duration_nanos) == bool(delta),
                          "%s: duration_nanos %s (Parca stores :delta only then)"
                          % (target, "set" if delta else "unset"), "got %d" % p.duration_nanos)
    # What the scrapers would be refused, for contrast: the 404s fail both.
    r = urlget(port, "/debug/pprof/profile", "conprof/v0.0.0")
    ctx.check(parca_validate(r) and alloy_validate(r), "an unknown profile fails both scrapers' checks")
    r = urlget(port, "/debug/pprof/allocs?debug=1", "Alloy/v1.0.0")
    ctx.check(alloy_validate(r),
              "the debug=1 text fails Alloy's Content-Type check (the README never asks for it)")
    all_resps.clear()

    # ---- 4. abuse ----------------------------------------------------------
    def after(what):
        r = req("/debug/pprof/heap")
        ctx.check(r.status == 200 and r.body[:2] == b"\x1f\x8b" and s.alive(),
                  "after %s: a normal request gets 200 and the program runs on" % what, repr(r))

    # Slow-drip clients, in the background while the rest goes on.
    drip = []

    def dripper(i):
        t0 = time.monotonic()
        out = b""
        how = "?"
        sk = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            for ch in b"GET /debug/pprof/heap HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: yes\r\n\r\n":
                sk.send(bytes([ch]))
                sk.settimeout(0.5)
                try:
                    b = sk.recv(65536)
                    out += b
                    how = "answered" if b else "closed"
                    break
                except socket.timeout:
                    continue
            else:
                how = "never cut off"
            if how == "answered":
                sk.settimeout(5)
                while True:
                    b = sk.recv(65536)
                    if not b:
                        break
                    out += b
        except OSError as e:
            how = "error %s" % e
        finally:
            sk.close()
        drip.append((how, time.monotonic() - t0, Resp(out)))
    drippers = [threading.Thread(target=dripper, args=(i,), daemon=True) for i in range(3)]
    for t in drippers:
        t.start()
    t_drip = time.monotonic()
    time.sleep(1.5)
    meanwhile = [req("/debug/pprof/heap") for _ in range(3)]
    ctx.check(all(t.is_alive() for t in drippers)
              and all(r.status == 200 and r.elapsed < 1 for r in meanwhile),
              "while 3 clients drip a byte per 0.5 s, others are served at once",
              str([(r.status, round(r.elapsed, 2)) for r in meanwhile]))

    for junk, what in ((b"GARBAGE\r\n\r\n", "GARBAGE"), (b"GET\r\n\r\n", "GET alone"),
                       (b"GET /debug/pprof/heap\r\n\r\n", "no HTTP version"),
                       (b"GET  /debug/pprof/heap HTTP/1.1\r\n\r\n", "two spaces"),
                       (b"get /debug/pprof/heap HTTP/1.1\r\n\r\n", "lower-case method"),
                       (b"GET /debug/pprof/heap HTTP/1.1 x\r\n\r\n", "extra field"),
                       (b"\x00\x01\x02\xff\xfebinary\x00junk\r\n\r\n", "binary junk with NULs"),
                       (bytes(range(1, 256)) * 4 + b"\r\n\r\n", "binary junk"),
                       (b"\r\n\r\n", "empty request")):
        r = raw(port, junk, timeout=15)
        ctx.check((r.status == 400 or (r.status is None and r.data == b"")) and r.elapsed < 5,
                  "malformed request (%s): 400 or close, at once" % what, repr(r))
    r = raw(port, b"GET /debug/pprof/" + b"x" * 3000 + b" HTTP/1.1\r\n\r\n")
    ctx.check(r.status in (404, 414), "a 3000-byte target: 414 (or 404)", repr(r))
    after("malformed request lines")

    big = "X-Filler: " + "a" * 1000
    r = get(port, "/debug/pprof/heap", headers=[big] * 64)
    ctx.check(r.status == 431 and r.h("X-Go-Pprof") == "1", "64 KiB of headers: 431", repr(r))
    r = raw(port, b"GET /debug/pprof/heap HTTP/1.1\r\nX: " + b"b" * 65536)  # no end of headers at all
    ctx.check(r.status == 431, "64 KiB of one unterminated header: 431", repr(r))
    after("64 KiB of headers")

    r = get(port, "/debug/pprof/symbol", method="POST",
            headers=["Transfer-Encoding: chunked"], body=b"")
    r2 = raw(port, b"POST /debug/pprof/symbol HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"6\r\n0x1234\r\n0\r\n\r\n")
    ctx.check(r.status == 411 and r2.status == 411, "chunked POST to symbol: 411", "%r %r" % (r, r2))
    after("a chunked body")
    r = get(port, "/debug/pprof/symbol", method="POST", body=b"0x1+" * 25600)
    ctx.check(r.status == 413, "100 KiB POST to symbol: 413", repr(r))
    r = raw(port, b"POST /debug/pprof/symbol HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")
    ctx.check(r.status == 413, "a Content-Length of 99999999999: 413 before any body", repr(r))
    r = get(port, "/debug/pprof/symbol", method="POST", body=b"0x1+" * 16000)
    ctx.check(r.status == 200 and r.body.startswith(b"num_symbols: 1\n"),
              "a 64000-byte POST to symbol: 200", repr(r))
    after("oversized bodies")

    # Mid-response departures: a big text profile (800 distinct stacks), read a
    # little of, then reset; then closed normally; and a ?seconds= wait abandoned.
    s.cmd("stacks 800 48", r"^stacks done$")
    for how in ("reset", "close"):
        sk = socket.socket()
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sk.settimeout(20)
        sk.connect(("127.0.0.1", port))
        sk.sendall(b"GET /debug/pprof/heap?debug=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sk.recv(2000)
        if how == "reset":
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sk.close()
        ctx.check(first.startswith(b"HTTP/1.1 200 OK"),
                  "big heap?debug=1: the response starts (%s)" % how, repr(first[:80]))
        after("a client that %s mid-response" % ("resets" if how == "reset" else "closes"))
    r = req("/debug/pprof/heap?debug=1", timeout=30)
    ctx.check(r.status == 200 and len(r.body) == int(r.h("Content-Length")) and len(r.body) > 1 << 20,
              "the big text profile is served whole to a client that stays (%d bytes)" % len(r.body),
              repr(r)[:300])
    sk = socket.create_connection(("127.0.0.1", port), timeout=10)
    sk.sendall(b"GET /debug/pprof/allocs?seconds=20 HTTP/1.1\r\n\r\n")
    time.sleep(0.3)
    sk.close()
    after("a client that leaves a ?seconds= wait")

    # The slow drippers are cut off after the 10 s request time.
    for t in drippers:
        t.join(max(0.1, 25 - (time.monotonic() - t_drip)))
    ctx.check(len(drip) == 3 and all(h in ("answered", "closed") and 9 <= e <= 15
                                     and (r.status in (408, None)) for h, e, r in drip),
              "slow-drip clients are cut off (408 or close) within 10-15 s",
              str([(h, round(e, 1), r.status) for h, e, r in drip]))
    after("slow-drip clients")

    # ?seconds= windows take at most half the slots: of 16 at once, 8 wait
    # and get their deltas, 8 get 503 at once, and plain scrapes are served
    # meanwhile.
    waits = [None] * 16

    def waiter(i):
        waits[i] = get(port, "/debug/pprof/allocs?seconds=3", timeout=20)
    wt = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(16)]
    for t in wt:
        t.start()
    time.sleep(0.5)
    during = [get(port, "/debug/pprof/heap", timeout=10) for _ in range(3)]
    ctx.check(all(r.status == 200 and r.elapsed < 2 for r in during),
              "while 8 ?seconds= windows wait, plain scrapes are served",
              str([(r.status, round(r.elapsed, 2)) for r in during]))
    for t in wt:
        t.join(20)
    ok = [r for r in waits if r is not None and r.status == 200
          and r.h("Content-Disposition") == 'attachment; filename="allocs-delta"']
    refused = [r for r in waits if r is not None and r.status == 503
               and r.body == b"too many ?seconds= profiles under way; retry\n"
               and r.elapsed < 2]
    ctx.check(len(ok) == 8 and len(refused) == 8,
              "of 16 ?seconds= requests, 8 get their deltas and 8 get 503 at once",
              str([r and (r.status, round(r.elapsed, 1)) for r in waits]))

    # Every slot taken by clients that have sent nothing yet: a newcomer gets
    # 503 at once; a second later such clients give their slots away.
    idle = []
    for _ in range(16):
        sk = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.append(sk)
    time.sleep(0.2)
    busy = [get(port, "/debug/pprof/heap", timeout=10) for _ in range(3)]
    ctx.check(all(r.status == 503 and r.elapsed < 1 for r in busy),
              "with all 16 slots taken, newcomers get 503 at once",
              str([(r.status, round(r.elapsed, 2)) for r in busy]))
    ctx.check(all(r.body == b"too many connections to heaptap; retry\n"
                  and r.h("X-Go-Pprof") == "1" and r.h("X-Content-Type-Options") == "nosniff"
                  and r.h("Connection") == "close" and r.h("Content-Type") == "text/plain; charset=utf-8"
                  and int(r.h("Content-Length") or -1) == len(r.body) for r in busy),
              "the 503s carry Connection: close, nosniff, X-Go-Pprof and their Content-Length",
              repr(busy[:1]))
    time.sleep(1.2)
    later = get(port, "/debug/pprof/heap", timeout=10)
    ctx.check(later.status == 200,
              "a second later, a newcomer takes the slot of a client that sent nothing",
              "%r" % (later.status,))
    for sk in idle:
        sk.close()

    # 200 concurrent connections: each 200 or 503, none hangs.
    res = [None] * 200

    def client(i):
        res[i] = get(port, "/debug/pprof/heap", timeout=30)
    ts = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(200)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(40)
    took = time.monotonic() - t0
    statuses = {}
    for r in res:
        k = r.status if r is not None else "hung"
        statuses[k] = statuses.get(k, 0) + 1
    ok200 = [r for r in res if r is not None and r.status == 200]
    busy = [r for r in res if r is not None and r.status == 503]
    ctx.check(len(ok200) + len(busy) == 200 and ok200 and took < 30,
              "200 concurrent connections: each gets 200 or 503, in %.1f s" % took, str(statuses))
    ctx.check(all(int(r.h("Content-Length") or -1) == len(r.body) for r in busy),
              "... the 503s among them are whole (%d)" % len(busy))
    ctx.check(all(r.body[:2] == b"\x1f\x8b" and int(r.h("Content-Length")) == len(r.body) for r in ok200),
              "the 200s are whole profiles")
    after("200 concurrent connections")

    # The served profile holds at most 16000 samples (Pyroscope's default limit),
    # with the totals kept. (After this, no ?debug=1: 17000 deep stacks make a
    # text profile of tens of MB.)
    s.cmd("stacks 17000 48", r"^stacks done$", timeout=60)
    time.sleep(FRESH)
    r = req("/debug/pprof/heap", timeout=60)
    if ctx.check(r.status == 200, "heap with 17800 stacks: 200", repr(r)):
        p = decode_bytes(ctx, r.body, "capped")
        live = p.figures().get("heap_live_estimate_bytes")
        ctx.check(len(p.samples) <= 16000 and p.total("inuse_space") == live,
                  "a served profile holds at most 16000 samples, totals kept",
                  "%d samples, inuse %d vs %s" % (len(p.samples), p.total("inuse_space"), live))
    for what, r in all_resps:
        common_headers(ctx, r, what, seen_enc)
    ctx.check(not seen_enc, "no response carries Content-Encoding", str(seen_enc))

    # ---- 5. process hygiene -----------------------------------------------
    hygiene(ctx, s)
    if ctx.cli and os.path.exists(ctx.cli):
        p = subprocess.run([ctx.cli, "run", "--http", "127.0.0.1:0", "--",
                            "sh", "-c", 'echo "$HEAPTAP_HTTP"'],
                           env=htlib.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        ctx.check(p.returncode == 0 and p.stdout.decode().strip() == "127.0.0.1:0",
                  "heaptap run --http ADDR sets HEAPTAP_HTTP", repr(p.stdout + p.stderr))
    ctx.note("took %.1f s" % (time.monotonic() - t_start))


# ---------------------------------------------------------------------------
# Listening sockets, from /proc (and ss when installed).

def listeners():
    """{inode: (addr, port)} of the TCP sockets in LISTEN state."""
    out = {}
    for fam in ("tcp", "tcp6"):
        try:
            with open("/proc/net/" + fam) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] != "0A":
                        continue
                    a, p = parts[1].split(":")
                    if fam == "tcp":
                        addr = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(a, 16)))
                    else:
                        addr = socket.inet_ntop(socket.AF_INET6, b"".join(
                            struct.pack("<I", int(a[i:i + 8], 16)) for i in range(0, 32, 8)))
                    out[int(parts[9])] = (addr, int(p, 16))
        except OSError:
            pass
    return out


def sockets_of(pid):
    """{fd: socket inode} of a process."""
    out = {}
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", t)
        if m:
            out[int(fd)] = int(m.group(1))
    return out


def listening_of(pid):
    ls = listeners()
    return {fd: ls[ino] for fd, ino in sockets_of(pid).items() if ino in ls}


def ss_listening(pid):
    """Local addresses ss -ltnp shows for pid, or None without ss."""
    if not shutil.which("ss"):
        return None
    p = subprocess.run(["ss", "-ltnpH"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []
    for line in p.stdout.decode().splitlines():
        if "pid=%d," % pid in line:
            out.append(line.split()[3])
    return out


def port_free(port):
    sk = socket.socket()
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sk.bind(("127.0.0.1", port))
        sk.listen(1)
        return True
    except OSError:
        return False
    finally:
        sk.close()


def free_port():
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    p = sk.getsockname()[1]
    sk.close()
    return p


def hygiene(ctx, s):
    port = s.port
    lst = listening_of(s.pid)
    ctx.check(list(lst.values()) == [("127.0.0.1", port)],
              "HEAPTAP_HTTP=:0: one listener, on 127.0.0.1:%d only" % port, str(lst))
    ss = ss_listening(s.pid)
    if ss is not None:
        ctx.check(ss == ["127.0.0.1:%d" % port],
                  "ss -ltnp: the program listens on 127.0.0.1:%d only" % port, str(ss))
    if lst:
        fd = list(lst)[0]
        with open("/proc/%d/fdinfo/%d" % (s.pid, fd)) as f:
            flags = int(re.search(r"flags:\s*(\d+)", f.read()).group(1), 8)
        ctx.check(flags & 0o2000000, "the listening descriptor %d is close-on-exec" % fd, oct(flags))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft > 1100:
            ctx.check(fd >= 1024, "the listening descriptor sits above 1023", "fd %d" % fd)
    lino = set(sockets_of(s.pid)[fd] for fd in lst)

    # A program it execs does not hold the port.
    m = re.match(r"child=(\d+)$", s.cmd("spawn", r"^child=\d+$")[-1])
    child = int(m.group(1))
    time.sleep(0.5)  # past the exec
    try:
        held = lino & set(sockets_of(child).values())
        exe = os.readlink("/proc/%d/exe" % child)
        ctx.check(exe.endswith("sleep") and not held,
                  "a program the subject execs (%s) holds no copy of the listener" % exe, str(held))
        ss = ss_listening(child)
        if ss is not None:
            ctx.check("127.0.0.1:%d" % port not in ss,
                      "ss -ltnp: the exec'd child is not on the port", str(ss))
    finally:
        os.kill(child, 9)
    # A forked child does not either, and the port is free once the parent ends.
    m = re.match(r"forked=(\d+)$", s.cmd("fork 30", r"^forked=\d+$")[-1])
    forked = int(m.group(1))
    try:
        time.sleep(0.3)
        held = lino & set(sockets_of(forked).values())
        ctx.check(not held, "a forked child holds no copy of the listener", str(held))
        rc = s.exit()
        ctx.check(rc == 0, "the subject exits 0", s.r.transcript(20))
        ctx.check(os.path.exists("/proc/%d" % forked) and port_free(port),
                  "the port can be bound again once the parent ended (its forked child still runs)")
    finally:
        os.kill(forked, 9)

    # No HEAPTAP_HTTP: no listener at all.
    n = Subject(ctx, http=None, wait_port=False)
    n.cmd("alloc 10 100", r"^alloc done$")
    time.sleep(0.3)
    ctx.check(listening_of(n.pid) == {} and (ss_listening(n.pid) in (None, [])),
              "without HEAPTAP_HTTP nothing listens", str(listening_of(n.pid)))
    ctx.check(not n.r.heaptap_lines(), "without HEAPTAP_HTTP heaptap prints nothing", n.r.stderr)
    n.exit()

    # A fixed port already in use: one line, and the program runs on.
    fixed = free_port()
    a = Subject(ctx, http="127.0.0.1:%d" % fixed, wait_port=False)
    deadline = time.monotonic() + 10
    r = None
    while time.monotonic() < deadline:
        r = get(fixed, "/debug/pprof/", timeout=5)
        if r.status:
            break
        time.sleep(0.1)
    ctx.check(r and r.status == 200 and not a.r.heaptap_lines(),
              "HEAPTAP_HTTP=127.0.0.1:%d serves, silently" % fixed, "%r %s" % (r, a.r.stderr))
    b = Subject(ctx, http="127.0.0.1:%d" % fixed, wait_port=False)
    b.wait_stderr(r"^heaptap: ")
    time.sleep(0.3)
    lines = b.r.heaptap_lines()
    ctx.check(len(lines) == 1 and "address already in use" in lines[0] and str(fixed) in lines[0],
              "a second process on the same port: one heaptap: line (address in use)", str(lines))
    ctx.check(b.alive() and b.exit() == 0, "... and it runs on and exits 0", b.r.transcript(20))
    ctx.check(get(fixed, "/debug/pprof/").status == 200 and a.exit() == 0,
              "the first process still serves the port")

    # An address beyond loopback, named explicitly: served, with one warning line.
    w = Subject(ctx, http="0.0.0.0:0", wait_port=False)
    mm = w.wait_stderr(r"^heaptap: .*port (\d+)")
    wl = w.r.heaptap_lines()
    ctx.check(len(wl) == 1 and "beyond this machine" in wl[0],
              "HEAPTAP_HTTP=0.0.0.0:0: one warning line", str(wl))
    r = get(int(mm.group(1)), "/debug/pprof/")
    ctx.check(r.status == 200 and list(listening_of(w.pid).values()) == [("0.0.0.0", int(mm.group(1)))],
              "... and it serves where it was told (reached over loopback here)", repr(r))
    w.exit()

    # IPv6 loopback.
    try:
        sk = socket.socket(socket.AF_INET6)
        sk.bind(("::1", 0))
        sk.close()
        v6 = True
    except OSError:
        v6 = False
    if v6:
        x = Subject(ctx, http="[::1]:0", wait_port=False)
        mm = x.wait_stderr(r"^heaptap: serving /debug/pprof/ on http://\[::1\]:(\d+)/debug/pprof/$")
        r = get(int(mm.group(1)), "/debug/pprof/", host="::1", family=socket.AF_INET6)
        ctx.check(r.status == 200 and list(listening_of(x.pid).values()) == [("::1", int(mm.group(1)))],
                  "HEAPTAP_HTTP=[::1]:0 serves on ::1 only", repr(r))
        x.exit()
    else:
        ctx.note("no IPv6 loopback here: [::1] not checked")

    # Bad values: one line each, the program runs on.
    for bad in ("nonsense", "127.0.0.1:99999", "[::1", "127.0.0.1:", "::1:6060", "example.com:80"):
        b = Subject(ctx, http=bad, wait_port=False)
        b.wait_stderr(r"^heaptap: ")
        time.sleep(0.2)
        lines = b.r.heaptap_lines()
        quiet = listening_of(b.pid) == {}
        ctx.check(len(lines) == 1 and "HEAPTAP_HTTP" in lines[0] and quiet and b.alive()
                  and b.exit() == 0,
                  "HEAPTAP_HTTP=%s: one heaptap: line, no listener, the program runs on" % bad,
                  "%s\n%s" % (lines, b.r.transcript(10)))


# ---------------------------------------------------------------------------
# The README's configurations.

def readme_configs(ctx):
    """Paths the README's parca.yaml and Alloy blocks scrape: {'parca': [(path, delta)],
    'alloy': [(path, delta)]}; checks the defaults they must switch off."""
    path = os.path.join(ctx.srcdir, "README.md")
    with open(path) as f:
        text = f.read()
    sec = re.search(r"^## Serving profiles \(/debug/pprof\)$(.*?)^## ", text, re.M | re.S)
    if not ctx.check(sec, "README has the section 'Serving profiles (/debug/pprof)'"):
        return {"parca": [], "alloy": []}
    sec = sec.group(1)
    yaml = re.search(r"```yaml\n(.*?)```", sec, re.S)
    alloy = re.search(r"```alloy\n(.*?)```", sec, re.S)
    out = {"parca": [], "alloy": []}
    if ctx.check(yaml and "pprof_config:" in yaml.group(1), "README has a parca.yaml scrape config"):
        y = yaml.group(1)
        block = y[y.index("pprof_config:"):]
        ind = None
        keys = {}
        cur = None
        for line in block.splitlines()[1:]:
            if not line.strip() or line.strip().startswith("#"):
                continue
            n = len(line) - len(line.lstrip())
            if ind is None:
                ind = n
            if n < ind:
                break
            if n == ind:
                cur = line.strip().rstrip(":")
                keys[cur] = {}
            elif cur and ":" in line:
                k, _, v = line.strip().partition(":")
                keys[cur].setdefault(k.strip().lstrip("- "), v.strip())
        for k in ("memory", "block", "goroutine", "mutex", "process_cpu"):
            ctx.check(k in keys,
                      "parca.yaml names Parca's default profile %r (else it is re-added, enabled)" % k,
                      str(sorted(keys)))
        for k, v in keys.items():
            if v.get("enabled") == "false":
                continue
            p = v.get("path")
            ok = ctx.check(p and p.startswith("/debug/pprof/"),
                           "parca.yaml %s: a /debug/pprof/ path" % k, str(v))
            if ok:
                out["parca"].append((p, v.get("delta") == "true"))
        ctx.check(("/debug/pprof/allocs", True) in out["parca"],
                  "parca.yaml scrapes memory from /debug/pprof/allocs with delta: true", str(out["parca"]))
    if ctx.check(alloy and "pyroscope.scrape" in alloy.group(1),
                 "README has an Alloy pyroscope.scrape block"):
        a = alloy.group(1)
        rx = re.compile(r"(profile\.\w+(?: \"\w+\")?)\s*\{(.*?)\}", re.S)
        blocks = dict((m.group(1), m.group(2)) for m in rx.finditer(a))
        for k in ("profile.goroutine", "profile.block", "profile.mutex", "profile.process_cpu"):
            ctx.check(k in blocks and re.search(r"enabled\s*=\s*false", blocks[k]),
                      "Alloy block disables %s" % k, str(blocks.get(k)))
        for k in ("profile.memory", 'profile.custom "threads"'):
            ctx.check(k in blocks and re.search(r"enabled\s*=\s*true", blocks[k]),
                      "Alloy block enables %s" % k, str(blocks.get(k)))
        for k, b in blocks.items():
            if not re.search(r"enabled\s*=\s*true", b):
                continue
            m = re.search(r'path\s*=\s*"([^"]+)"', b)
            p = m.group(1) if m else ("/debug/pprof/allocs" if k == "profile.memory" else None)
            d = bool(re.search(r"delta\s*=\s*true", b))
            ctx.check(p and not d, "Alloy %s: %s, delta false" % (k, p), b)
            if p:
                out["alloy"].append((p, d))
        ctx.check(("/debug/pprof/threads", False) in out["alloy"], "Alloy scrapes /debug/pprof/threads",
                  str(out["alloy"]))
    return out


if __name__ == "__main__":
    htlib.main(body, __doc__)
