#!/usr/bin/env python3
"""pbtop.py - the top of a heaptap profile without go or protoc.

  pbtop.py FILE [N] [SAMPLE_TYPE]

A minimal reader of gzipped profile.proto (stdlib only): sums one sample type
(default: inuse_space for heap profiles, threads for thread profiles) by leaf
function and prints the N largest. The demo uses it when go tool pprof is not
installed; go tool pprof is the reader to use otherwise.
"""
import gzip
import sys


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(buf):
    """Yield (field_number, wire_type, value) of one message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v = buf[i:i + n]
            i += n
        elif wt == 1:
            v = int.from_bytes(buf[i:i + 8], "little")
            i += 8
        elif wt == 5:
            v = int.from_bytes(buf[i:i + 4], "little")
            i += 4
        else:
            raise ValueError("bad wire type %d" % wt)
        yield num, wt, v


def ints(wt, v):
    """A repeated integer field, packed or not."""
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        out.append(x)
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: pbtop.py FILE [N] [SAMPLE_TYPE]")
    data = gzip.open(sys.argv[1]).read()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    strings, types, samples, locs, funcs = [], [], [], {}, {}
    for num, wt, v in fields(data):
        if num == 1:  # sample_type
            types.append(dict((f, x) for f, _, x in fields(v)).get(1, 0))
        elif num == 2:  # sample
            lids, vals = [], []
            for f, w, x in fields(v):
                if f == 1:
                    lids += ints(w, x)
                elif f == 2:
                    vals += [(y if y < 1 << 63 else y - (1 << 64)) for y in ints(w, x)]
            samples.append((lids, vals))
        elif num == 4:  # location
            lid, first_fn = 0, None
            for f, w, x in fields(v):
                if f == 1:
                    lid = x
                elif f == 4 and first_fn is None:
                    first_fn = dict((g, y) for g, _, y in fields(x)).get(1)
            locs[lid] = first_fn
        elif num == 5:  # function
            d = dict((f, x) for f, _, x in fields(v))
            funcs[d.get(1, 0)] = d.get(2, 0)
        elif num == 6:  # string_table
            strings.append(v.decode("utf-8", "replace"))
    names = [strings[t] for t in types]
    want = sys.argv[3] if len(sys.argv) > 3 else ("inuse_space" if "inuse_space" in names else names[0])
    k = names.index(want)
    totals = {}
    for lids, vals in samples:
        fid = locs.get(lids[0]) if lids else None
        name = strings[funcs.get(fid, 0)] if fid is not None else "?"
        totals[name] = totals.get(name, 0) + vals[k]
    total = sum(totals.values()) or 1
    print("%s by leaf function (pbtop.py; total %d)" % (want, total))
    for name, v in sorted(totals.items(), key=lambda kv: -kv[1])[:n]:
        if want.endswith("space"):
            print("%12.2fMB %6.2f%%  %s" % (v / 1048576.0, 100.0 * v / total, name))
        else:
            print("%12d %6.2f%%  %s" % (v, 100.0 * v / total, name))


if __name__ == "__main__":
    main()
