#!/usr/bin/env python3
"""Files exactly as the contract says; bad settings never stop the program.

- a dump makes heaptap.<pid>.0001.heap.pb.gz and .threads.pb.gz, mode 0600,
  gzip, and nothing else is left in HEAPTAP_DIR (no temporary files);
- a symlink planted at the name of the next dump's heap file, pointing at a
  canary file outside the directory, is never followed: the canary keeps its
  content and mode;
- an unusable HEAPTAP_DIR gives one 'heaptap:' line for the failed dump, and
  the program exits 0;
- each bad environment value gives one 'heaptap:' line naming the variable,
  and the program exits 0.
"""
import os
import re
import signal
import stat
import time

import htlib

FINAL = re.compile(r"^heaptap\.(\d+)\.(\d{4})\.(heap|threads)\.pb\.gz$")


def complete_pairs(outdir, pid):
    """Seqs for which both regular files of pid are in outdir."""
    kinds = {}
    for n in os.listdir(outdir):
        m = FINAL.match(n)
        if m and int(m.group(1)) == pid and stat.S_ISREG(os.lstat(os.path.join(outdir, n)).st_mode):
            kinds.setdefault(int(m.group(2)), set()).add(m.group(3))
    return sorted(s for s, k in kinds.items() if k == {"heap", "threads"})


def files_and_modes(ctx, prog):
    r = ctx.start([prog, "--requests", "2000", "--idle", "30"])
    outdir = r.outdir
    try:
        r.wait_line(r"^phase idle", timeout=60)
        r.send(signal.SIGUSR2)
        heap, threads = r.wait_profiles(1, timeout=30)
        names = sorted(os.listdir(outdir))
        ctx.check(names == sorted(os.path.basename(p) for p in (heap, threads)),
                  "HEAPTAP_DIR holds exactly the pair heaptap.<pid>.0001.{heap,threads}.pb.gz",
                  "directory holds %s" % names)
        for p in (heap, threads):
            st = os.lstat(p)
            ctx.check(stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
                      "%s is a regular file, mode 0600" % os.path.basename(p),
                      "mode %o" % st.st_mode)
            with open(p, "rb") as f:
                ctx.check(f.read(2) == b"\x1f\x8b", "%s is gzip" % os.path.basename(p))
            ctx.decode(p)  # raises if protoc cannot read it

        # Plant a symlink at the next heap file's name, pointing outside.
        canary_dir = ctx.tmpdir("canary")
        canary = os.path.join(canary_dir, "canary.txt")
        with open(canary, "w") as f:
            f.write("canary\n")
        os.chmod(canary, 0o644)
        before = os.stat(canary)
        planted = r.profile_path(2, "heap")
        os.symlink(canary, planted)
        r.send(signal.SIGUSR2)
        # Wait for the second dump: a complete pair with a seq >= 2 (heaptap
        # may write it as 0002 by replacing the link, or move on to 0003).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seqs = complete_pairs(outdir, r.pid)
            if any(s >= 2 for s in seqs):
                break
            time.sleep(0.05)
        ctx.check(any(s >= 2 for s in complete_pairs(outdir, r.pid)),
                  "the dump after the planted symlink still writes a complete pair",
                  "directory holds %s" % sorted(os.listdir(outdir)))
        ctx.note("directory after the second dump: %s" % sorted(os.listdir(outdir)))
        after = os.stat(canary)
        with open(canary) as f:
            content = f.read()
        ctx.check(content == "canary\n" and after.st_size == before.st_size and
                  stat.S_IMODE(after.st_mode) == 0o644 and after.st_mtime == before.st_mtime,
                  "the canary behind the planted symlink is unchanged",
                  "content %r mode %o" % (content[:40], after.st_mode))
        st = os.lstat(planted)
        if stat.S_ISLNK(st.st_mode):
            ctx.check(os.readlink(planted) == canary, "the planted symlink is left untouched")
        else:
            # rename() replaced the link itself (it never follows it): acceptable.
            ctx.check(stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
                      "the symlink was replaced by the profile, never followed",
                      "mode %o" % st.st_mode)
            ctx.note("heaptap replaced the planted symlink by rename (not followed)")
        leftovers = [n for n in os.listdir(outdir) if not FINAL.match(n)]
        ctx.check(not leftovers, "no temporary files left after two dumps", str(leftovers))
    finally:
        r.kill()
    ctx.check(all(l.startswith("heaptap: ") for l in r.stderr_lines),
              "every stderr line starts with 'heaptap: '", r.stderr)


def unusable_dir(ctx, prog):
    base = ctx.tmpdir("baddir")
    afile = os.path.join(base, "a-file")
    with open(afile, "w") as f:
        f.write("not a directory\n")
    # A path below a regular file: unusable even for root.
    for bad in (os.path.join(afile, "sub"), os.path.join(base, "missing", "dir")):
        r = ctx.run([prog, "--requests", "200", "--idle", "0", "--dump"], outdir=bad, cwd=base)
        ctx.check(r.returncode == 0, "HEAPTAP_DIR=%s: program exits 0" % bad, r.transcript())
        ctx.check(re.search(r"^dump: rc=-\d+", r.stdout, re.M),
                  "HEAPTAP_DIR=%s: heaptap_dump() returns a negative errno" % bad, r.stdout)
        lines = r.heaptap_lines()
        other = [l for l in lines if "HEAPTAP_DIR" not in l]
        ctx.check(len(other) == 1, "HEAPTAP_DIR=%s: one heaptap: line for the failed dump" % bad,
                  "lines: %s" % lines)
        ctx.check(all(l.startswith("heaptap: ") for l in r.stderr_lines),
                  "HEAPTAP_DIR=%s: nothing but heaptap: lines on stderr" % bad, r.stderr)
        ctx.check(os.listdir(base) == ["a-file"], "HEAPTAP_DIR=%s: nothing written elsewhere" % bad,
                  str(os.listdir(base)))


BAD_VALUES = [
    ("HEAPTAP_RATE", "abc"),
    ("HEAPTAP_RATE", "-1"),
    ("HEAPTAP_INTERVAL", "-5"),
    ("HEAPTAP_INTERVAL", "10parsecs"),
    ("HEAPTAP_SIGNAL", "FOO"),
    ("HEAPTAP_DEPTH", "0"),
    ("HEAPTAP_DEPTH", "many"),
    ("HEAPTAP_AT_EXIT", "maybe"),
]


def bad_env(ctx, prog):
    for var, value in BAD_VALUES:
        r = ctx.run([prog, "--requests", "200", "--idle", "0", "--dump"], env={var: value})
        what = "%s=%s" % (var, value)
        ctx.check(r.returncode == 0, "%s: program exits 0" % what, r.transcript())
        lines = r.heaptap_lines()
        ctx.check(len(lines) == 1 and var in lines[0],
                  "%s: exactly one heaptap: line naming %s" % (what, var), "lines: %s" % lines)
        ctx.check(len(lines) == 1 and value in lines[0],
                  "%s: the line shows the value" % what, "lines: %s" % lines)
        ctx.check("dump: rc=0" in r.stdout, "%s: heaptap runs on with the default" % what,
                  r.stdout)


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("leaky_server")
    files_and_modes(ctx, prog)
    unusable_dir(ctx, prog)
    bad_env(ctx, prog)


if __name__ == "__main__":
    htlib.main(body, __doc__)
