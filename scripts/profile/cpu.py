#!/usr/bin/env python3
"""CPU time of every process on the machine, sampled each second from /proc, grouped
(ticketing by --target, postgres, nginx, nats, redis, loadgen, the machine's other
servers). Runs until SIGINT/SIGTERM, then writes CPU-seconds per group per 5 s window
and the totals to OUT.

Usage: cpu.py OUT
"""
import collections
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
NAMED = ("postgres", "nginx", "nats", "redis", "loadgen", "beam", "mariadb", "mosquitto", "rabbitmq")


def sample(pid):
    """(group, CPU seconds so far) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    end = stat.rfind(")")
    comm = stat[stat.find("(") + 1 : end]
    fields = stat[end + 2 :].split()
    seconds = (int(fields[11]) + int(fields[12])) / TICK
    if args and os.path.basename(args[0]) == "ticketing":
        target = "all"
        for i, arg in enumerate(args):
            if arg == "--target" and i + 1 < len(args):
                target = args[i + 1]
            elif arg.startswith("--target="):
                target = arg.split("=", 1)[1]
        return "ticketing:" + target, seconds
    for name in NAMED:
        if comm.startswith(name) or (args and name in os.path.basename(args[0])):
            return name, seconds
    # Kernel threads rename themselves (kworker/…): one group.
    return ("kernel" if not args else "other"), seconds


def main():
    out = sys.argv[1]
    stopped = []
    signal.signal(signal.SIGINT, lambda *_: stopped.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
    last, windows, start = {}, [], time.time()
    while not stopped:
        now, used = {}, collections.Counter()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            seen = sample(pid)
            if seen is None:
                continue
            now[pid] = seen
            before = last.get(pid)
            # A process first seen counts from its first sample (its past is not this run's).
            if before is not None and before[0] == seen[0]:
                used[seen[0]] += seen[1] - before[1]
        last = now
        windows.append((time.time() - start, used))
        time.sleep(1)
    total = collections.Counter()
    for _, used in windows:
        total.update(used)
    groups = [g for g, s in total.most_common() if s >= 0.5]
    with open(out, "w") as f:
        f.write("   t " + "".join(f"{g[:16]:>17}" for g in groups) + "    all\n")
        for i in range(0, len(windows), 5):
            window = collections.Counter()
            for _, used in windows[i : i + 5]:
                window.update(used)
            f.write(f"{windows[i][0]:4.0f} " + "".join(f"{window[g]:17.1f}" for g in groups))
            f.write(f" {sum(window.values()):6.1f}\n")
        f.write("total" + "".join(f"{total[g]:17.1f}" for g in groups) + f" {sum(total.values()):6.1f}\n")


if __name__ == "__main__":
    main()
