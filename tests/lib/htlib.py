"""htlib - shared helpers for heaptap's integration tests (python3, stdlib only).

The tests run the example programs under LD_PRELOAD=libheaptap.so with
HEAPTAP_* variables in a fresh temporary directory, wait for the profiles, and
check them with two readers that share no code with heaptap:

  * protoc --decode perftools.profiles.Profile with pprof's own profile.proto
    (Debian: golang-github-google-pprof-dev), parsed here from protobuf text
    format into a Profile object;
  * go tool pprof (-raw, -top), when go is installed.

It lives in tests/lib with rlib.py; ctest puts that directory on PYTHONPATH.
Every test script takes the same options (tests/CMakeLists.txt passes them):
  --lib PATH        libheaptap.so
  --bindir DIR      the built examples
  --builddir DIR    the build tree
  --srcdir DIR      the source tree
  --proto-dir DIR   directory holding profile.proto
  --cli PATH        the build-tree heaptap script
Exit status: 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
"""

import argparse
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
PROTO_DIR_DEFAULT = "/usr/share/gocode/src/github.com/google/pprof/proto"


class Skip(Exception):
    """Raised to skip the whole test (exit 77)."""


class Failure(Exception):
    """Raised for a failure after which the test cannot go on."""


# ---------------------------------------------------------------------------
# Test context: options, temporary directory, pass/fail bookkeeping.

class Context:
    def __init__(self, description):
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--lib", required=True)
        ap.add_argument("--bindir", required=True)
        ap.add_argument("--builddir", default=None)
        ap.add_argument("--srcdir", default=None)
        ap.add_argument("--proto-dir", default=PROTO_DIR_DEFAULT)
        ap.add_argument("--cli", default=None)
        ap.add_argument("--keep", action="store_true", help="keep temporary directories")
        self.args, _ = ap.parse_known_args()
        self.lib = os.path.abspath(self.args.lib)
        self.bindir = os.path.abspath(self.args.bindir)
        self.builddir = os.path.abspath(self.args.builddir) if self.args.builddir else None
        self.srcdir = os.path.abspath(self.args.srcdir) if self.args.srcdir else None
        self.proto_dir = self.args.proto_dir
        self.cli = self.args.cli
        self.failures = []
        self.passes = 0
        self.tmpdirs = []
        if not os.path.exists(self.lib):
            raise Failure("library not found: %s (build the heaptap target)" % self.lib)

    # -- bookkeeping ---------------------------------------------------------
    def check(self, cond, what, detail=""):
        """Record one check; print 'ok' or 'FAIL' with the detail."""
        if cond:
            self.passes += 1
            print("ok   %s" % what)
        else:
            self.failures.append(what)
            print("FAIL %s%s" % (what, (": " + detail) if detail else ""))
        sys.stdout.flush()
        return bool(cond)

    def note(self, msg):
        print("     %s" % msg)
        sys.stdout.flush()

    def tmpdir(self, tag="run"):
        d = tempfile.mkdtemp(prefix="heaptap-%s-" % tag)
        self.tmpdirs.append(d)
        return d

    def finish(self):
        keep = self.args.keep or self.failures
        for d in self.tmpdirs:
            if keep:
                print("     kept %s" % d)
            else:
                shutil.rmtree(d, ignore_errors=True)
        print("%d checks passed, %d failed" % (self.passes, len(self.failures)))
        return 1 if self.failures else 0

    # -- tools ---------------------------------------------------------------
    def need_protoc(self):
        if not shutil.which("protoc"):
            raise Skip("protoc not found (apt-get install protobuf-compiler)")
        if not os.path.exists(os.path.join(self.proto_dir, "profile.proto")):
            raise Skip("profile.proto not found in %s "
                       "(apt-get install golang-github-google-pprof-dev)" % self.proto_dir)

    def example(self, name):
        path = os.path.join(self.bindir, name)
        if not os.path.exists(path):
            raise Failure("example not built: %s" % path)
        return path

    def decode(self, path):
        return decode_profile(path, self.proto_dir)

    # -- running programs ----------------------------------------------------
    def start(self, argv, env=None, preload=True, outdir=None, cwd=None):
        """Start argv under heaptap (unless preload=False) with HEAPTAP_DIR=outdir."""
        if outdir is None:
            outdir = self.tmpdir()
        return Run(self, argv, env=env, preload=preload, outdir=outdir, cwd=cwd)

    def run(self, argv, env=None, preload=True, outdir=None, cwd=None, timeout=120):
        r = self.start(argv, env=env, preload=preload, outdir=outdir, cwd=cwd)
        r.wait(timeout)
        return r


# HEAPTAP_* variables that configure a whole test run rather than one program, and so
# pass through: HEAPTAP_UNWIND_CHECK=1 exported runs every test with both unwinders
# compared (README, "Environment").
PASS_THROUGH = ("HEAPTAP_UNWIND_CHECK",)


def check_usage_errors(ctx, cli, argvs, env):
    """Each argv (arguments of the heaptap command) is a usage error: exit
    2 and exactly one line on stderr, starting "heaptap: "."""
    for bad in argvs:
        p = subprocess.run([cli] + bad, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = p.stderr.decode().splitlines()
        ctx.check(p.returncode == 2 and len(lines) == 1 and lines[0].startswith("heaptap: "),
                  "heaptap %s: exit 2 with one heaptap: line" % " ".join(bad),
                  "exit %d, stderr %r" % (p.returncode, p.stderr))


def clean_env(extra=None):
    """The environment without any HEAPTAP_* (but PASS_THROUGH) or LD_PRELOAD, plus
    extra."""
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("HEAPTAP_") or k in PASS_THROUGH) and k != "LD_PRELOAD"}
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


class Run:
    """A program started under heaptap (or without it), with its output collected as it
    comes. rlib.py extends it (stdin, hang reports with backtraces)."""

    def __init__(self, ctx, argv, env=None, preload=True, outdir=None, cwd=None,
                 preexec=None, stdin=False, raw_env=None):
        self.ctx = ctx
        self.argv = [str(a) for a in argv]
        self.outdir = outdir
        if raw_env is not None:
            self.env = raw_env
        else:
            extra = {"HEAPTAP_DIR": outdir}
            if preload:
                extra["LD_PRELOAD"] = ctx.lib
            extra.update(env or {})
            self.env = clean_env(extra)
        self.stdout_lines = []
        self.stderr_lines = []
        self._cv = threading.Condition()
        self.returncode = None
        self.elapsed = None
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=cwd or outdir or None,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=preexec)
        self.pid = self.proc.pid
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines),
                             daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cv:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        stream.close()

    def timed_out(self, why):
        """Called when the program did not do what was waited for in time: kill it and
        fail. Subclasses add diagnostics."""
        self.kill()
        raise Failure("%s: %s\n%s" % (os.path.basename(self.argv[0]), why, self.transcript()))

    def wait_line(self, pattern, timeout=60):
        """Wait for a stdout line matching pattern; return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.stdout_lines:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._readers):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.1))
        self.timed_out("no output line matching %r within %ss (exit %s)" % (
            pattern, timeout, self.proc.poll()))

    def send(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=120):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.timed_out("did not exit within %ss (hang?)" % timeout)
        self.elapsed = time.monotonic() - self.t0
        for t in self._readers:
            t.join(10)
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._readers:
            t.join(10)

    @property
    def stdout(self):
        with self._cv:
            return "\n".join(self.stdout_lines)

    @property
    def stderr(self):
        with self._cv:
            return "\n".join(self.stderr_lines)

    def heaptap_lines(self):
        """stderr lines heaptap printed (they start with 'heaptap: ')."""
        with self._cv:
            return [l for l in self.stderr_lines if l.startswith("heaptap: ")]

    def transcript(self, limit=None):
        def tail(lines):
            lines = list(lines)
            if limit and len(lines) > limit:
                lines = ["... (%d lines)" % (len(lines) - limit)] + lines[-limit:]
            return "\n".join(lines)
        with self._cv:
            return "--- %s (pid %d, exit %s)\n--- stdout:\n%s\n--- stderr:\n%s\n---" % (
                " ".join(self.argv)[:300], self.pid, self.proc.poll(), tail(self.stdout_lines),
                tail(self.stderr_lines))

    def expects(self):
        """The program's 'expect <fn> <inuse_b> <inuse_o> <alloc_b> <alloc_o>' lines."""
        return parse_expects(self.stdout_lines)

    def profile_path(self, seq, kind="heap"):
        return profile_path(self.outdir, self.pid, seq, kind)

    def wait_profiles(self, seq=1, timeout=30):
        """Wait for both files of dump seq; return (heap_path, threads_path)."""
        paths = [self.profile_path(seq, "heap"), self.profile_path(seq, "threads")]
        wait_files(paths, timeout, what=self)
        return tuple(paths)


def parse_expects(lines):
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 6 and parts[0] == "expect":
            out[parts[1]] = {
                "inuse_space": int(parts[2]), "inuse_objects": int(parts[3]),
                "alloc_space": int(parts[4]), "alloc_objects": int(parts[5]),
            }
    return out


def profile_path(outdir, pid, seq, kind):
    return os.path.join(outdir, "heaptap.%d.%04d.%s.pb.gz" % (pid, seq, kind))


def wait_files(paths, timeout=30, what=None):
    deadline = time.monotonic() + timeout
    while True:
        missing = [p for p in paths if not os.path.exists(p)]
        if not missing:
            return
        if time.monotonic() > deadline:
            d = os.path.dirname(missing[0])
            listing = sorted(os.listdir(d)) if os.path.isdir(d) else "(no such directory)"
            extra = ("\n" + what.transcript()) if isinstance(what, Run) else ""
            raise Failure("profile not written within %ss: %s\n     directory holds: %s%s" % (
                timeout, ", ".join(os.path.basename(p) for p in missing), listing, extra))
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# Decoding with protoc: protobuf text format -> nested dicts -> Profile.

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<punct>[{}:<>\[\],;])
    | (?P<word>[A-Za-z0-9_.+\-]+)
    )""", re.X | re.S)


def _unescape(lit):
    """Decode a text-format string literal (C escapes, octal bytes) to str."""
    body = lit[1:-1]
    out = bytearray()
    i = 0
    simple = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11,
              "\\": 92, "'": 39, '"': 34, "?": 63}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        i += 1
        e = body[i]
        if e in simple:
            out.append(simple[e])
            i += 1
        elif e in "01234567":
            j = i
            while j < len(body) and j < i + 3 and body[j] in "01234567":
                j += 1
            out.append(int(body[i:j], 8) & 0xff)
            i = j
        elif e == "x":
            j = i + 1
            while j < len(body) and j < i + 3 and body[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(body[i + 1:j], 16))
            i = j
        else:
            out += ("\\" + e).encode()
            i += 1
    return out.decode("utf-8", "replace")


def parse_text_format(text):
    """Parse protobuf text format into {field: [values]} (messages are dicts)."""
    tokens = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise Failure("cannot parse protoc output near: %r" % text[pos:pos + 60])
        pos = m.end()
        if m.group("str") is not None:
            tokens.append(("str", m.group("str")))
        elif m.group("punct") is not None:
            tokens.append(("p", m.group("punct")))
        elif m.group("word") is not None:
            tokens.append(("w", m.group("word")))

    def scalar(tok):
        kind, v = tok
        if kind == "str":
            return _unescape(v)
        if v in ("true", "false"):
            return v == "true"
        try:
            return int(v, 0)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v  # an enum name

    def message(i, closing):
        msg = {}
        while i < len(tokens):
            kind, v = tokens[i]
            if kind == "p" and v == closing:
                return msg, i + 1
            if kind != "w":
                raise Failure("unexpected token %r in protoc output" % (v,))
            name = v
            i += 1
            if tokens[i] == ("p", ":"):
                i += 1
            kind, v = tokens[i]
            if kind == "p" and v in "{<":
                sub, i = message(i + 1, "}" if v == "{" else ">")
                msg.setdefault(name, []).append(sub)
            else:
                val = scalar(tokens[i])
                i += 1
                # Adjacent string literals concatenate.
                while isinstance(val, str) and i < len(tokens) and tokens[i][0] == "str":
                    val += _unescape(tokens[i][1])
                    i += 1
                msg.setdefault(name, []).append(val)
            if i < len(tokens) and tokens[i] in (("p", ","), ("p", ";")):
                i += 1
        if closing is None:
            return msg, i
        raise Failure("unterminated message in protoc output")

    msg, _ = message(0, None)
    return msg


def _one(msg, field, default=0):
    v = msg.get(field)
    return v[-1] if v else default


class Profile:
    """A decoded perftools.profiles.Profile."""

    def __init__(self, raw, path=""):
        self.path = path
        self.raw = raw
        self.strings = raw.get("string_table", [])
        if not self.strings or self.strings[0] != "":
            # string_table[0] must be "" - protoc prints it as "".
            pass
        s = self.str
        self.sample_types = [(s(_one(t, "type")), s(_one(t, "unit")))
                             for t in raw.get("sample_type", [])]
        pt = raw.get("period_type", [{}])[0]
        self.period_type = (s(_one(pt, "type")), s(_one(pt, "unit")))
        self.period = _one(raw, "period")
        self.time_nanos = _one(raw, "time_nanos")
        self.duration_nanos = _one(raw, "duration_nanos")
        self.comments = [s(i) for i in raw.get("comment", [])]
        self.default_sample_type = s(_one(raw, "default_sample_type"))
        self.drop_frames = s(_one(raw, "drop_frames"))
        self.mappings = {}
        for m in raw.get("mapping", []):
            self.mappings[_one(m, "id")] = {
                "id": _one(m, "id"),
                "memory_start": _one(m, "memory_start"),
                "memory_limit": _one(m, "memory_limit"),
                "file_offset": _one(m, "file_offset"),
                "filename": s(_one(m, "filename")),
                "build_id": s(_one(m, "build_id")),
                "has_functions": bool(_one(m, "has_functions", False)),
                "has_filenames": bool(_one(m, "has_filenames", False)),
                "has_line_numbers": bool(_one(m, "has_line_numbers", False)),
            }
        self.functions = {}
        for f in raw.get("function", []):
            self.functions[_one(f, "id")] = {
                "id": _one(f, "id"),
                "name": s(_one(f, "name")),
                "system_name": s(_one(f, "system_name")),
                "filename": s(_one(f, "filename")),
                "start_line": _one(f, "start_line"),
            }
        self.locations = {}
        for l in raw.get("location", []):
            self.locations[_one(l, "id")] = {
                "id": _one(l, "id"),
                "mapping_id": _one(l, "mapping_id"),
                "address": _one(l, "address"),
                "lines": [(_one(ln, "function_id"), _one(ln, "line"))
                          for ln in l.get("line", [])],
            }
        self.samples = []
        for smp in raw.get("sample", []):
            labels = {}
            for lab in smp.get("label", []):
                key = s(_one(lab, "key"))
                if "str" in lab:
                    labels.setdefault(key, []).append(s(_one(lab, "str")))
                else:
                    labels.setdefault(key, []).append(_one(lab, "num"))
            self.samples.append({
                "location_ids": list(smp.get("location_id", [])),
                "values": list(smp.get("value", [])),
                "labels": labels,
            })

    def figures(self):
        """key=value numbers from the comments (e.g. samples_dropped=0)."""
        out = {}
        for c in self.comments:
            for k, v in re.findall(r"([A-Za-z_][\w.]*)=(-?\d+)\b", c):
                out[k] = int(v)
        return out

    def str(self, i):
        if isinstance(i, int) and 0 <= i < len(self.strings):
            return self.strings[i]
        return "" if i in (0, None) else "<bad string index %r>" % (i,)

    # -- queries -------------------------------------------------------------
    def index(self, sample_type):
        names = [t for t, _ in self.sample_types]
        if sample_type not in names:
            raise Failure("%s: no sample type %r (have %s)" % (self.path, sample_type, names))
        return names.index(sample_type)

    def stack(self, sample):
        """Function names of a sample, leaf (the allocator's caller) first."""
        names = []
        for lid in sample["location_ids"]:
            loc = self.locations.get(lid)
            if loc is None:
                names.append("<missing location %d>" % lid)
                continue
            if not loc["lines"]:
                names.append("0x%x" % loc["address"])
            for fid, _line in loc["lines"]:
                fn = self.functions.get(fid)
                names.append(fn["name"] if fn else "<missing function %d>" % fid)
        return names

    def total(self, sample_type):
        k = self.index(sample_type)
        return sum(s["values"][k] for s in self.samples)

    def by_leaf(self, sample_type):
        k = self.index(sample_type)
        out = {}
        for smp in self.samples:
            st = self.stack(smp)
            leaf = st[0] if st else "<empty stack>"
            out[leaf] = out.get(leaf, 0) + smp["values"][k]
        return out

    def leaf_total(self, sample_type, fn):
        k = self.index(sample_type)
        return sum(smp["values"][k] for smp in self.samples
                   if self.stack(smp) and fn_matches(self.stack(smp)[0], fn))

    def anywhere_total(self, sample_type, fn):
        """Sum over samples with fn anywhere in the stack (each sample once)."""
        k = self.index(sample_type)
        return sum(smp["values"][k] for smp in self.samples
                   if any(fn_matches(n, fn) for n in self.stack(smp)))

    def samples_with(self, fn):
        return [smp for smp in self.samples if any(fn_matches(n, fn) for n in self.stack(smp))]

    def top(self, sample_type, n=10):
        """The n leaf functions with the largest totals: [(name, value)]."""
        agg = self.by_leaf(sample_type)
        return sorted(agg.items(), key=lambda kv: -kv[1])[:n]


def fn_matches(name, fn):
    """Does a profile function name denote the source function fn?

    C names match exactly; C++ names may be demangled ('ns::fn(int)') or
    mangled ('_Z2fnv')."""
    if name == fn:
        return True
    if re.fullmatch(r"(?:[\w:<>, ]*::)?%s(?:\(.*\))?(?: const)?" % re.escape(fn), name):
        return True
    m = re.match(r"_Z(?:N\d+\w+?)?(\d+)", name)
    if m and name[m.end():m.end() + len(fn)] == fn and int(m.group(1)) == len(fn):
        return True
    return False


def decode_profile(path, proto_dir=PROTO_DIR_DEFAULT):
    """gunzip + protoc --decode; returns a Profile. Raises Failure on errors."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        raise Failure("%s is not gzip (starts with %r)" % (path, data[:4]))
    try:
        raw = gzip.decompress(data)
    except Exception as e:  # noqa: BLE001 - report any gzip problem the same way
        raise Failure("%s: gunzip failed: %s" % (path, e))
    p = subprocess.run(["protoc", "--decode", "perftools.profiles.Profile",
                        "--proto_path", proto_dir, "profile.proto"],
                       input=raw, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise Failure("%s: protoc --decode failed: %s" % (
            path, p.stderr.decode("utf-8", "replace").strip()))
    return Profile(parse_text_format(p.stdout.decode("utf-8", "replace")), path)


# ---------------------------------------------------------------------------
# go tool pprof, the second, independent reader.

_go_env_cache = {}


def go_env():
    if "env" not in _go_env_cache:
        base = tempfile.mkdtemp(prefix="heaptap-go-")
        env = dict(os.environ)
        env.update({"HOME": base, "GOCACHE": os.path.join(base, "cache"),
                    "GOPATH": os.path.join(base, "gopath"), "PPROF_TMPDIR": base,
                    "GOFLAGS": "", "GO111MODULE": "off"})
        env.pop("LD_PRELOAD", None)
        _go_env_cache["env"] = env
    return _go_env_cache["env"]


def have_go_pprof():
    if not shutil.which("go"):
        return False
    p = subprocess.run(["go", "tool", "-n", "pprof"], env=go_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode == 0


def go_pprof(args, path, timeout=120):
    """Run go tool pprof ARGS PATH; return stdout (str). Raises Failure."""
    p = subprocess.run(["go", "tool", "pprof"] + list(args) + [path], env=go_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if p.returncode != 0:
        raise Failure("go tool pprof %s %s failed (%d): %s" % (
            " ".join(args), path, p.returncode, p.stderr.decode("utf-8", "replace").strip()))
    return p.stdout.decode("utf-8", "replace")


def pprof_raw_leaf_totals(path, sample_type):
    """Totals of one sample type by leaf function, from go tool pprof -raw."""
    text = go_pprof(["-raw"], path)
    lines = text.splitlines()
    # Sections: header, "Samples:", the sample-type line, samples, "Locations", "Mappings".
    try:
        si = lines.index("Samples:")
    except ValueError:
        raise Failure("go tool pprof -raw: no Samples section:\n" + text[:2000])
    types = lines[si + 1].split()
    if sample_type not in [t.split("/")[0] for t in types]:
        raise Failure("go tool pprof -raw: no %s in %s" % (sample_type, types))
    col = [t.split("/")[0] for t in types].index(sample_type)
    samples = []
    i = si + 2
    while i < len(lines) and lines[i].strip() != "Locations":
        line = lines[i]
        m = re.match(r"\s*([-\d\s]+):\s*([\d\s]*)$", line)
        if m:
            vals = [int(v) for v in m.group(1).split()]
            locs = [int(v) for v in m.group(2).split()]
            samples.append((vals, locs))
        i += 1
    leaf_of = {}
    cur = None
    i += 1
    while i < len(lines) and lines[i].strip() != "Mappings":
        line = lines[i]
        m = re.match(r"\s*(\d+): (0x[0-9a-f]+) M=\d+ (\S+)", line)
        if m:
            cur = int(m.group(1))
            leaf_of[cur] = m.group(3)  # first line = innermost function
        i += 1
    out = {}
    for vals, locs in samples:
        leaf = leaf_of.get(locs[0], "?") if locs else "<empty stack>"
        out[leaf] = out.get(leaf, 0) + vals[col]
    return out


def pprof_top(path, sample_index=None, n=10):
    """Rows of go tool pprof -top: list of (flat_text, name)."""
    args = ["-top", "-nodecount=%d" % n]
    if sample_index:
        args.append("-sample_index=%s" % sample_index)
    text = go_pprof(args, path)
    rows = []
    started = False
    for line in text.splitlines():
        if re.match(r"\s*flat\s+flat%\s+sum%\s+cum\s+cum%", line):
            started = True
            continue
        if started and line.strip():
            parts = line.split(None, 5)
            if len(parts) == 6:
                rows.append((parts[0], parts[5].strip()))
    return rows, text


# ---------------------------------------------------------------------------
# Checks shared by several tests.

def check_heap_shape(ctx, prof, rate=None):
    """The heap profile shape the contract fixes."""
    want = [("alloc_objects", "count"), ("alloc_space", "bytes"),
            ("inuse_objects", "count"), ("inuse_space", "bytes")]
    ctx.check(prof.sample_types == want, "heap sample_type is %s" % want, "got %s" % prof.sample_types)
    ctx.check(prof.default_sample_type == "inuse_space", "default_sample_type inuse_space",
              "got %r" % prof.default_sample_type)
    ctx.check(prof.period_type == ("space", "bytes"), "period_type space/bytes",
              "got %s" % (prof.period_type,))
    if rate is not None:
        ctx.check(prof.period == rate, "period == rate %d" % rate, "got %s" % prof.period)
    # The comments name the allocator underneath: glibc in every test program.
    ctx.check("allocator=glibc" in prof.comments, "comments name the allocator (glibc)",
              str(prof.comments))


def check_thread_shape(ctx, prof):
    ctx.check(prof.sample_types == [("threads", "count")], "thread sample_type threads/count",
              "got %s" % prof.sample_types)
    ctx.check(prof.period_type == ("threads", "count") and prof.period == 1,
              "thread period_type threads/count, period 1",
              "got %s period %s" % (prof.period_type, prof.period))


def check_no_drops(ctx, prof, label=""):
    """Comments that report dropped samples or events must say 0."""
    drops = {k: v for k, v in prof.figures().items() if "drop" in k}
    ctx.check(drops and all(v == 0 for v in drops.values()),
              "%sno samples or events dropped" % label,
              "comments report %s" % (drops or "no drop counters: %s" % prof.comments))


def compare_expects(ctx, prof, expects, mode="leaf", label=""):
    """Exact comparison of the 'expect' lines with the profile (rate 1)."""
    if not expects:
        ctx.check(False, "%sprogram printed expect lines" % label)
        return
    for fn, want in sorted(expects.items()):
        for st in ("inuse_space", "inuse_objects", "alloc_space", "alloc_objects"):
            if mode == "leaf":
                got = prof.leaf_total(st, fn)
            else:
                got = prof.anywhere_total(st, fn)
            ctx.check(got == want[st], "%s%s %s == %d" % (label, fn, st, want[st]),
                      "profile has %d (%+d)" % (got, got - want[st]))


def dump_stacks(prof, fn=None, sample_type="inuse_space", limit=15):
    """Readable samples (for failure messages)."""
    k = prof.index(sample_type) if sample_type in [t for t, _ in prof.sample_types] else 0
    out = []
    for smp in prof.samples:
        st = prof.stack(smp)
        if fn and not any(fn_matches(n, fn) for n in st):
            continue
        out.append("%12d  %s" % (smp["values"][k], " <- ".join(st[:12])))
        if len(out) >= limit:
            break
    return "\n".join(out)


def main(body, description=""):
    """Run body(ctx); map Skip to 77, Failure to 1."""
    try:
        ctx = Context(description)
    except Failure as e:
        print("FAIL %s" % e)
        sys.exit(1)
    try:
        body(ctx)
    except Skip as e:
        print("SKIP %s" % e)
        ctx.finish()
        sys.exit(SKIP)
    except Failure as e:
        ctx.failures.append(str(e).splitlines()[0])
        print("FAIL %s" % e)
    sys.exit(ctx.finish())


# Signals by name for tests.
SIGNALS = {"USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2}

__all__ = ["Context", "Run", "Profile", "Skip", "Failure", "decode_profile", "fn_matches",
           "go_pprof", "have_go_pprof", "pprof_raw_leaf_totals", "pprof_top", "main",
           "check_heap_shape", "check_thread_shape", "check_no_drops", "compare_expects", "dump_stacks",
           "profile_path", "wait_files", "parse_expects", "clean_env"]
