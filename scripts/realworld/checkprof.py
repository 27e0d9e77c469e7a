#!/usr/bin/env python3
"""checkprof.py DIR [PROTO_DIR] - check heaptap's output directory.

Prints one summary ("profiles=N pids=P ok", or what is wrong) and exits 0
when every heaptap.<pid>.<seq>.{heap,threads}.pb.gz decodes with protoc,
every dump has both files of its pair, and no temporary file is left; 1
otherwise. With HEAPTAP_UNWIND_CHECK=1 in the environment (the programs ran
in cross-check mode) every heap profile must also say unwind_mismatches=0,
and the summary gives the stacks each unwinder took. stdlib + protoc only.
"""
import gzip
import os
import re
import subprocess
import sys

FINAL = re.compile(r"^heaptap\.(\d+)\.(\d{4,})\.(heap|threads)\.pb\.gz$")


def main():
    d = sys.argv[1]
    proto = sys.argv[2] if len(sys.argv) > 2 else \
        "/usr/share/gocode/src/github.com/google/pprof/proto"
    finals, tmps, bad = [], [], []
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if FINAL.match(name):
            finals.append(name)
        elif name.startswith(".heaptap.") and name.endswith(".tmp"):
            tmps.append(name)
    can_decode = os.path.exists(os.path.join(proto, "profile.proto"))
    checking = os.environ.get("HEAPTAP_UNWIND_CHECK") == "1"
    last = {}
    for name in finals:
        try:
            with open(os.path.join(d, name), "rb") as f:
                raw = gzip.decompress(f.read())
        except Exception as e:  # noqa: BLE001
            bad.append("%s: %s" % (name, e))
            continue
        text = b""
        if can_decode:
            r = subprocess.run(["protoc", "--decode", "perftools.profiles.Profile",
                                "--proto_path", proto, "profile.proto"], input=raw,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if r.returncode != 0:
                bad.append("%s: protoc: %s" % (name, r.stderr.decode()[:100]))
            text = r.stdout
        if checking and name.endswith(".heap.pb.gz") and can_decode:
            # The figures are one string of the decoded string table.
            m = re.search(rb'"unwind_fast=(\d+) unwind_fallback=(\d+) unwind_mismatches=(\d+)"',
                          text)
            if not m:
                bad.append("%s: no unwind figures" % name)
            else:
                mism = int(m.group(3))
                if mism:
                    bad.append("%s: unwind_mismatches=%d" % (name, mism))
                # Counters are per process and cumulative: keep each pid's last.
                last[FINAL.match(name).group(1)] = (int(m.group(1)), int(m.group(2)))
    pids = {FINAL.match(n).group(1) for n in finals}
    kinds = {}
    for n in finals:
        m = FINAL.match(n)
        kinds.setdefault((m.group(1), m.group(2)), set()).add(m.group(3))
    bad += ["heaptap.%s.%s: only %s" % (pid, seq, "/".join(sorted(k)))
            for (pid, seq), k in sorted(kinds.items()) if k != {"heap", "threads"}]
    if bad or tmps:
        print("profiles=%d BAD %s tmp=%s" % (len(finals), "; ".join(bad[:3]), tmps[:3]))
        return 1
    extra = ""
    if checking:
        fast = sum(v[0] for v in last.values())
        fallback = sum(v[1] for v in last.values())
        extra = " unwind-check: 0 mismatches, own unwinder %d stacks, libunwind %d" % (
            fast, fallback)
    print("profiles=%d pids=%d %s%s" % (len(finals), len(pids),
                                        "decode-ok" if can_decode else "gunzip-ok", extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
