#!/usr/bin/env python3
"""Summaries of a profiled drop: requests by kind per STEP seconds (rate, p50, p99 in ms)
from loadgen's --requests-csv, and the busy backends' waits and statements from the
pg-activity sample (all of them, or those between FROM and TO as MM:SS), and what each
database and table did between two samples of scripts/profile/pg-stats.sh (the first and
the last, or those at least FROM and at most TO seconds after the first), and each
process's waits for a pool connection from the metrics scripts/profile/metrics.sh kept.

Usage: summary.py requests REQUESTS_CSV [STEP]
       summary.py waits ACTIVITY_FILE [FROM TO]
       summary.py tables PG_STATS_OUT [FROM TO]
       summary.py pools METRICS_DIR
"""
import collections
import csv
import sys


def requests(path, step=5):
    rows = list(csv.reader(open(path)))[1:]
    windows = collections.defaultdict(lambda: collections.defaultdict(list))
    for sent, kind, _status, micros in rows:
        windows[int(float(sent) // step) * step][kind].append(int(micros) / 1000)
    kinds = sorted({r[1] for r in rows if not r[1].startswith("setup")})
    print("   t | " + " | ".join(f"{k[:24]:>24}" for k in kinds))
    for t in sorted(windows):
        cells = []
        for kind in kinds:
            lat = sorted(windows[t][kind])
            if not lat:
                cells.append(" " * 24)
                continue
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            cells.append(f"{len(lat) / step:5.0f}/s {lat[len(lat) // 2]:6.1f} {p99:7.1f}")
        print(f"{t:4d} | " + " | ".join(cells))


def differences(path, keys, start, end):
    """Per key (the first `keys` fields after the epoch): the last sample within
    [first + start, first + end] minus the first one, and the seconds between them."""
    samples = collections.defaultdict(dict)
    for line in open(path):
        parts = line.rstrip("\n").split("|")
        samples[tuple(parts[1 : 1 + keys])][int(parts[0])] = [
            int(v or 0) for v in parts[1 + keys :]
        ]
    first = min(t for by_time in samples.values() for t in by_time)
    out = {}
    for key, by_time in samples.items():
        times = [t for t in sorted(by_time) if start <= t - first <= end]
        if len(times) > 1:
            a, b = by_time[times[0]], by_time[times[-1]]
            out[key] = ([y - x for x, y in zip(a, b)], times[-1] - times[0])
    return out


def tables(out, start=0, end=10**9):
    print("database: transactions, rows returned, fetched, inserted, updated, deleted")
    for (db,), (d, secs) in sorted(differences(out + ".db", 1, start, end).items()):
        print(f"  {db[-16:]:>16} ({secs} s): " + ", ".join(map(str, d)))
    print("table: seq scans, rows they read, index scans, inserted, updated, deleted")
    rows = differences(out + ".tables", 2, start, end).items()
    for (db, table), (d, secs) in sorted(rows, key=lambda r: -r[1][0][1]):
        if any(d):
            print(f"  {db[-16:]:>16} {table:>20} ({secs} s): " + ", ".join(map(str, d)))


def waits(path, start=None, end=None):
    counts, samples = collections.Counter(), set()
    for line in open(path):
        parts = line.rstrip("\n").split("|")
        if len(parts) < 6:
            continue
        at, db, kind, event, state, statement = parts[:6]
        if start and not (start <= at[:5] <= end):
            continue
        samples.add(at)
        counts[(db, f"{kind} {event}", state[:8], statement[:60])] += 1
    print(f"{len(samples)} samples (busy backends: database, wait, state, statement)")
    for key, n in counts.most_common(20):
        print(n, *key)


def pools(directory):
    import glob
    import os

    for path in sorted(glob.glob(os.path.join(directory, "*.prom"))):
        found = {}
        for line in open(path):
            if line.startswith("ticketing_store_writer_wait_seconds_"):
                name, value = line.split("{")[0], float(line.rsplit(" ", 1)[1])
                found[name.rsplit("_", 1)[1]] = value
        n, total = found.get("count", 0), found.get("sum", 0.0)
        if n:
            name = os.path.basename(path)[: -len(".prom")]
            print(f"  {name:>14}: {int(n)}, {1000 * total / n:.1f}, {total:.1f}")


if __name__ == "__main__":
    if sys.argv[1] == "pools":
        pools(sys.argv[2])
    elif sys.argv[1] == "tables":
        tables(sys.argv[2], *map(int, sys.argv[3:5]))
    elif sys.argv[1] == "requests":
        requests(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)
    else:
        waits(sys.argv[2], *sys.argv[3:5])
