"""rlib - helpers for heaptap's reliability tests (python3, stdlib only).

Builds on htlib.py, next to it in tests/lib (Context, decoding with protoc,
Skip and Failure), and adds what these tests need on top:

  * Proc: a program started with or without LD_PRELOAD, stdin as a pipe,
    optional preexec (rlimits, ignored signals), output collected as it comes;
  * a hang watchdog: a program that outlives its timeout gets
    `gdb -p PID -batch -ex 'thread apply all bt'` (itself and every
    descendant) printed before it is killed, so a deadlock is diagnosable
    from the ctest log alone;
  * check_outdir: every file under a final name decodes completely, the
    pairs of each dump are complete, no temporary file is left behind.

Every driver takes the htlib options (--lib, --bindir, ...) plus --soak
(longer, heavier runs; ctest registers those only with -DHEAPTAP_SOAK=ON).
"""

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import htlib
from htlib import Failure, Skip, clean_env, decode_profile  # noqa: F401 (for the drivers)

SOAK = "--soak" in sys.argv
if SOAK:
    sys.argv.remove("--soak")

FINAL_RE = re.compile(r"^heaptap\.(\d+)\.(\d{4,})\.(heap|threads)\.pb\.gz$")
TMP_RE = re.compile(r"^\.heaptap\..*\.tmp$")


def scale(quick, soak):
    return soak if SOAK else quick


def main(body, description=""):
    htlib.main(body, description)


# ---------------------------------------------------------------------------
# Processes.

def descendants(pid):
    """pid and all its descendants (via /proc/<pid>/task/*/children)."""
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                try:
                    with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                        todo.extend(int(c) for c in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


def gdb_backtraces(pid):
    """All-thread backtraces of pid and its descendants, as text."""
    if not shutil.which("gdb"):
        return "(gdb not installed: no backtrace)"
    parts = []
    for p in descendants(pid)[:8]:
        try:
            r = subprocess.run(["gdb", "-p", str(p), "-batch", "-nx",
                                "-ex", "set pagination off",
                                "-ex", "thread apply all bt"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=60)
            text = r.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            text = "(gdb timed out)"
        keep = [l for l in text.splitlines()
                if l.startswith(("Thread ", "#")) or "LWP" in l]
        parts.append("=== gdb backtrace of pid %d\n%s" % (p, "\n".join(keep) or text))
    return "\n".join(parts)


def thread_names(pid):
    out = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    out[int(tid)] = f.read().strip()
            except OSError:
                pass
    except OSError:
        pass
    return out


def task_status(pid, tid):
    out = {}
    with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


class Proc(htlib.Run):
    """htlib.Run with a stdin to talk to, key=value parsing, and hang reports: a program
    that does not exit or answer in time gets a gdb backtrace of every thread (of it and
    its children) before it is killed."""

    def __init__(self, ctx, argv, env=None, preload=True, outdir=None, cwd=None,
                 preexec=None, stdin=True, raw_env=None):
        super().__init__(ctx, argv, env=env, preload=preload, outdir=outdir, cwd=cwd,
                         preexec=preexec, stdin=stdin, raw_env=raw_env)

    @property
    def out(self):
        return self.stdout_lines

    @property
    def err(self):
        return self.stderr_lines

    def say(self, line):
        """Write one line to the program's stdin."""
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except (OSError, AttributeError):
            pass

    def timed_out(self, why):
        self.hang_report(why)

    def hang_report(self, why):
        """Print gdb backtraces (if still running), kill, raise Failure."""
        bt = ""
        if self.proc.poll() is None:
            bt = gdb_backtraces(self.pid)
        self.kill()
        for t in self._readers:
            t.join(5)
        raise Failure("%s: %s\n%s\n%s" % (os.path.basename(self.argv[0]), why,
                                          self.transcript(), bt))

    def kill(self):
        for p in reversed(descendants(self.pid)):
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()

    def values(self):
        """key=value pairs from stdout (last one wins)."""
        out = {}
        for line in self.stdout.splitlines():
            for k, v in re.findall(r"([A-Za-z_]\w*)=(-?\w+)", line):
                out[k] = v
        return out

    def transcript(self, limit=60):
        return super().transcript(limit)


def run(ctx, argv, timeout=60, **kw):
    p = Proc(ctx, argv, stdin=kw.pop("stdin", False), **kw)
    p.wait(timeout)
    return p


def baseline(ctx, argv, label="", timeout=60):
    """Run argv without heaptap; check it exits 0 having printed done=1."""
    p = run(ctx, argv, preload=False, timeout=timeout)
    ctx.check(p.returncode == 0 and p.values().get("done") == "1",
              "%swithout heaptap: the program runs to the end" % label, p.transcript())
    return p


def api_runs(ctx, prog, api, tag, timeout=60):
    """A program of heaptap's API (heaptap_pause, heaptap_set_rate, ...):
    without heaptap it must run to the end with the call returning -ENOSYS
    (it prints `<api>=<result>`); then under heaptap at rate 1, into a fresh
    output directory, it must run to the end, read its stats and write its
    dump. Returns the second run, its values and the directory."""
    base = run(ctx, [prog], preload=False, timeout=timeout)
    bv = base.values()
    ctx.check(base.returncode == 0 and bv.get("done") == "1" and
              bv.get(api) == str(-errno.ENOSYS),
              "without heaptap: runs to the end, %s returns -ENOSYS" % tag, base.transcript())
    d = ctx.tmpdir(os.path.basename(prog))
    p = run(ctx, [prog], outdir=d, env={"HEAPTAP_RATE": "1"}, timeout=timeout + 30)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("done") == "1" and v.get("dump") == "0" and
              v.get("stats") == "0", "runs to the end under heaptap, stats read, dump written",
              p.transcript())
    return p, v, d


def api_heap(ctx, p, d):
    """The heap profile of api_runs' first dump, decoded and checked for the
    shape of a rate-1 profile; None (a failed check) when it is missing."""
    finals = check_outdir(ctx, d)
    if (p.pid, 1) not in finals:
        ctx.check(False, "dump written", str(sorted(finals)))
        return None
    prof = ctx.decode(finals[(p.pid, 1)]["heap"])
    htlib.check_heap_shape(ctx, prof, rate=1)
    return prof


# ---------------------------------------------------------------------------
# Output directories.

def list_outdir(d):
    """{(pid, seq): {kind: path}}, [temporary files], [other files]."""
    finals, tmps, other = {}, [], []
    if not os.path.isdir(d):
        return finals, tmps, other
    for name in sorted(os.listdir(d)):
        m = FINAL_RE.match(name)
        if m:
            finals.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = \
                os.path.join(d, name)
        elif TMP_RE.match(name):
            tmps.append(name)
        else:
            other.append(name)
    return finals, tmps, other


def check_outdir(ctx, d, label="", want_pairs=True, allow_tmp=False, decode=True):
    """Every final file decodes; pairs complete; no temp files. Returns finals."""
    finals, tmps, _ = list_outdir(d)
    bad = []
    if decode:
        for key, kinds in sorted(finals.items()):
            for kind, path in kinds.items():
                try:
                    prof = decode_profile(path, ctx.proto_dir)
                    want = "inuse_space" if kind == "heap" else "threads"
                    if want not in [t for t, _ in prof.sample_types]:
                        bad.append("%s: sample types %s" % (os.path.basename(path),
                                                            prof.sample_types))
                except Failure as e:
                    bad.append(str(e).splitlines()[0])
    ctx.check(not bad, "%severy file under a final name decodes (%d dumps)" % (label, len(finals)),
              "; ".join(bad[:5]))
    if want_pairs:
        half = ["%s.%04d" % k for k, v in finals.items() if set(v) != {"heap", "threads"}]
        ctx.check(not half, "%severy dump has both heap and threads files" % label,
                  ", ".join(half[:10]))
    if not allow_tmp:
        ctx.check(not tmps, "%sno temporary files left" % label, ", ".join(tmps[:10]))
    return finals


def need_protoc(ctx):
    ctx.need_protoc()


def lines_matching(lines, word):
    return [l for l in lines if word in l]
