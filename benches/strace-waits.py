#!/usr/bin/python3
"""Where concurrent CNI calls wait: sums the time each plugin program spends
in the system calls that can block on something shared, from one
`strace -f -v -T -o FILE` log of plexus-bench-concurrency (see
docs/bench-concurrency.md).

usage: strace-waits.py FILE   (from strace -f -v -T -o FILE ...)

Per program and CNI command (the path it exec'd; threads and forks before an
exec count for their parent), per process on average:

- netlink requests that take RTNL (link/address/route changes: NEWLINK,
  DELLINK, SETLINK, NEWADDR, DELADDR, NEWROUTE, DELROUTE), as requests and ms;
- other netlink requests (GETs: no RTNL on kernels >= 6.10);
- flock, fsync/fdatasync, rename, and other socket reads (the API server).

The counts are exact. The times are not: strace stops every thread at every
traced call, and on a busy machine a call's measured time includes waiting
for strace itself; compare programs within one log, never with untraced runs.
"""
import collections
import re
import sys

RTNL_TYPES = {0x10, 0x11, 0x13, 0x14, 0x15, 0x18, 0x19}
NAMES = {"RTM_NEWLINK": 0x10, "RTM_DELLINK": 0x11, "RTM_GETLINK": 0x12, "RTM_SETLINK": 0x13,
         "RTM_NEWADDR": 0x14, "RTM_DELADDR": 0x15, "RTM_NEWROUTE": 0x18, "RTM_DELROUTE": 0x19}
LINE = re.compile(r"^(\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
DURATION = re.compile(r"<([\d.]+)>\s*$")
RESULT = re.compile(r"=\s*(-?\d+)")


def nl_type(args):
    m = re.search(r"nlmsg_type=(0x[0-9a-f]+|RTM_\w+)", args)
    if not m:
        return None
    t = m.group(1)
    return int(t, 16) if t.startswith("0x") else NAMES.get(t)


def classify(name, args):
    if name in ("sendto", "sendmsg"):
        t = nl_type(args)
        if t is None:
            return None
        return "netlink RTNL write" if t in RTNL_TYPES else "netlink other"
    if name in ("flock",):
        return "flock"
    if name in ("fsync", "fdatasync"):
        return "fsync"
    if name in ("rename", "renameat", "renameat2"):
        return "rename"
    if name == "recvfrom" and "nlmsg" not in args:
        return "socket read (API)"
    return None


def main(path):
    prog = {}
    pending = {}
    procs = collections.defaultdict(set)
    total = collections.defaultdict(lambda: collections.defaultdict(float))
    count = collections.defaultdict(lambda: collections.defaultdict(int))
    for raw in open(path, errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        tid, rest = int(m.group(1)), m.group(2)
        r = RESUMED.match(rest)
        if r:
            name, args = r.group(1), pending.pop(tid, "") + r.group(2)
        else:
            c = CALL.match(rest)
            if not c:
                continue
            name, args = c.group(1), c.group(2)
            if rest.endswith("<unfinished ...>"):
                pending[tid] = args
                continue
        res = RESULT.search(args.split(")")[-1] if ")" in args else args)
        if name in ("clone", "clone3", "fork", "vfork") and res and int(res.group(1)) > 0:
            # A vfork child may exec before its parent's clone returns.
            prog.setdefault(int(res.group(1)), prog.get(tid, "bench"))
        if name == "execve" and re.search(r"\)\s*=\s*0\b", args):
            # Full path: ours and the reference share basenames; the CNI
            # command from the environment (strace -v) splits ADD from DEL.
            cmd = re.search(r'"CNI_COMMAND=(\w+)"', args)
            prog[tid] = args.split('"')[1] + (" " + cmd.group(1) if cmd else "")
        p = prog.get(tid, "bench")
        if name == "execve":
            procs[p].add(tid)
        d = DURATION.search(args)
        kind = classify(name, args)
        if kind and d:
            total[p][kind] += float(d.group(1)) * 1e3
            count[p][kind] += 1
    for p in sorted(total):
        if p == "bench" or "/ip" in p:
            continue
        n = max(len(procs[p]), 1)
        print(f"{p}: {n} processes; per process:")
        for kind in sorted(total[p]):
            print(f"  {kind:20s} {count[p][kind] / n:6.1f} calls  {total[p][kind] / n:8.2f} ms")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
