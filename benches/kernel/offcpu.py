#!/usr/bin/env python3
"""Off-CPU time of `ip` (or any comm) by kernel stack, from `perf script`.

Input: `perf record -e sched:sched_switch -g` output rendered by `perf script`.
For every switch *away* from a task of the given comm, the time until the
task is switched back *in* is charged to the blocking stack (state D or S),
or to "runnable, waiting for a CPU" when it was preempted (state R). Prints, per distinct "reason" (the first frame below the
scheduler that is not a generic wait primitive) and per full stack, the
total and per-operation blocked time.

Usage: perf script -i perf.data | offcpu.py [comm] [operations]
"""
import re
import sys
from collections import defaultdict

COMM = sys.argv[1] if len(sys.argv) > 1 else "ip"
OPS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
GENERIC = re.compile(
    r"^(__schedule|schedule|schedule_timeout|schedule_preempt_disabled|"
    r"__wait_for_common|wait_for_completion\w*|__mutex_lock\w*|mutex_lock\w*|"
    r"__cond_resched|preempt_schedule\w*|io_schedule\w*|rwsem_down\w*|down_\w+|"
    r"__synchronize_srcu|__wait_rcu_gp|wait_rcu_gp|rcu_\w*wait\w*)\b"
)

header = re.compile(
    r"^\s*(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:\s+(.*)$"
)
events = []
cur = None
for line in sys.stdin:
    if line[:1] not in ("\t", " ", "\n", ""):
        # Any event header ends the previous stack; only switches are kept.
        m = header.match(line)
        cur = None
        if m:
            cur = {"ts": float(m.group(4)), "fields": m.group(5), "stack": []}
            events.append(cur)
        continue
    if cur is not None and line.strip():
        parts = line.split()
        if len(parts) >= 2:
            cur["stack"].append(parts[1].split("+")[0])

blocked_at = {}
by_reason = defaultdict(float)
by_stack = defaultdict(float)
total = 0.0
for ev in events:
    f = ev["fields"]
    prev = re.search(r"prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+)", f)
    nxt = re.search(r"next_comm=(.*?) next_pid=(\d+)", f)
    if nxt and nxt.group(2) in blocked_at:
        ts0, stack, state = blocked_at.pop(nxt.group(2))
        dt = ev["ts"] - ts0
        frames = [s for s in stack if not s.startswith("entry_") and s != "[unknown]"]
        if state.startswith("R"):
            # Preempted while runnable: waiting for a CPU, not for the kernel.
            reason = "(runnable, waiting for a CPU)"
        else:
            reason = next((s for s in frames if not GENERIC.match(s)), "?")
        by_reason[reason] += dt
        by_stack[" < ".join(frames[:12])] += dt
        total += dt
    if prev and prev.group(1) == COMM and prev.group(3)[0] in "DSR":
        blocked_at[prev.group(2)] = (ev["ts"], ev["stack"], prev.group(3))

print(f"off-CPU time of '{COMM}': {total*1e3:.1f} ms total, {total*1e3/OPS:.2f} ms per operation ({OPS} ops)")
for reason, dt in sorted(by_reason.items(), key=lambda x: -x[1])[:12]:
    print(f"  {dt*1e3/OPS:8.2f} ms/op  {reason}")
print("top stacks:")
for st, dt in sorted(by_stack.items(), key=lambda x: -x[1])[:8]:
    print(f"  {dt*1e3/OPS:8.2f} ms/op  {st}")
