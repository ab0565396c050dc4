#!/usr/bin/env python3
"""The DuckDB reference of grove-node's `queries` benchmark (run by it; not on its own).

Loads the ad-events CSV into a native DuckDB table once (explicit types; the millisecond
timestamps become TIMESTAMP; rows in Grove's segment order, by advertiser then time), then runs the SQL equivalents of the benchmark's native queries:
warm-up runs, then timed runs (execute + fetchall), and prints one JSON object on the last line
of stdout: `<query>_ms` medians, `load_ms`, `threads`, `version`, and `checks` (the same answer
summaries the Rust side computes from Grove's answers). Progress goes to stderr.

The IN query draws a fresh list of advertisers per run with the benchmark's scheme: run r
(warm-ups included) uses splitmix64 seeded with in_seed + r, ids uniform below 100,000, distinct,
in draw order. DuckDB runs in-process with its default threads (all cores).
"""

import argparse
import json
import statistics
import sys
import time

import duckdb

MASK = (1 << 64) - 1
ADVERTISERS = 100_000
DAY = ("2024-06-01 00:00:00", "2024-06-02 00:00:00")
POINT_HOUR = ("2024-06-01 12:00:00", "2024-06-01 13:00:00")
TOP_COUNTRY = "C000"  # Zipf rank 0 of 200
POINT_ADVERTISER = "advertiser-007919"  # Zipf rank 1 of 100,000


class Rng:
    """splitmix64, as segment/benches/common/mod.rs's Rng."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next() * n) >> 64


def in_filter_ids(seed, count):
    rng = Rng(seed)
    seen = set()
    ids = []
    while len(ids) < count:
        i = rng.below(ADVERTISERS)
        if i not in seen:
            seen.add(i)
            ids.append(f"advertiser-{i:06d}")
    return ids


def queries(args, con):
    """(key, function of the run number returning (sql, parameters), summary of the rows)."""
    day = f"timestamp >= TIMESTAMP '{DAY[0]}' AND timestamp < TIMESTAMP '{DAY[1]}'"

    def fixed(sql):
        return lambda run: (sql, [])

    def in_filter(run):
        # A literal list, as a client would send it (Grove parses its 1,000 values per query too).
        ids = ", ".join(f"'{i}'" for i in in_filter_ids(args.in_seed + run, args.in_ids))
        sql = (
            "SELECT date_trunc('day', timestamp) AS day, advertiser, sum(clicks) AS clicks, "
            f"sum(spend) AS spend FROM ad_events WHERE {day} AND advertiser IN ({ids}) "
            "GROUP BY ALL"
        )
        return sql, []

    return [
        ("count", fixed(f"SELECT count(*) FROM ad_events WHERE {day}"),
         lambda rows: {"rows": rows[0][0]}),
        ("sum_by_hour",
         fixed("SELECT date_trunc('hour', timestamp) AS hour, sum(spend) FROM ad_events "
               f"WHERE {day} GROUP BY ALL ORDER BY hour"),
         lambda rows: {"buckets": len(rows), "spend": sum(r[1] for r in rows)}),
        ("topn_country",
         fixed("SELECT campaign, sum(clicks) AS clicks FROM ad_events "
               f"WHERE {day} AND country = '{TOP_COUNTRY}' "
               "GROUP BY ALL ORDER BY clicks DESC, campaign LIMIT 100"),
         lambda rows: {"rows": len(rows), "clicks": sum(r[1] for r in rows)}),
        ("groupby_country_device",
         fixed(f"SELECT country, device, count(*) FROM ad_events WHERE {day} GROUP BY ALL"),
         lambda rows: {"groups": len(rows), "rows": sum(r[2] for r in rows)}),
        ("in_filter_1000", in_filter,
         lambda rows: {"groups": len(rows), "clicks": sum(r[2] for r in rows)}),
        ("approx_distinct",
         fixed(f"SELECT approx_count_distinct(campaign) FROM ad_events WHERE {day}"),
         # Both engines' estimates are checked against the exact count (computed once, untimed):
         # two HLL estimates can disagree by more than either is off.
         lambda rows: {"campaigns": con.execute(
             f"SELECT count(DISTINCT campaign) FROM ad_events WHERE {day}").fetchone()[0],
             "duckdb_estimate": rows[0][0]}),
        ("point",
         fixed("SELECT count(*), sum(clicks), sum(spend) FROM ad_events "
               f"WHERE advertiser = '{POINT_ADVERTISER}' AND timestamp >= "
               f"TIMESTAMP '{POINT_HOUR[0]}' AND timestamp < TIMESTAMP '{POINT_HOUR[1]}'"),
         lambda rows: {"rows": rows[0][0], "clicks": rows[0][1] or 0, "spend": rows[0][2] or 0.0}),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--in-seed", type=int, required=True)
    parser.add_argument("--in-ids", type=int, default=1000)
    args = parser.parse_args()

    con = duckdb.connect()  # in memory; default threads = all cores
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    started = time.perf_counter()
    con.execute(
        "CREATE TABLE ad_events AS SELECT epoch_ms(timestamp) AS timestamp, "
        "advertiser, campaign, country, device, data_pack, status_code, impressions, clicks, "
        "latency, spend FROM read_csv(?, header = true, auto_detect = false, columns = {"
        "'timestamp': 'BIGINT', 'advertiser': 'VARCHAR', 'campaign': 'VARCHAR', "
        "'country': 'VARCHAR', 'device': 'VARCHAR', 'data_pack': 'VARCHAR', "
        "'status_code': 'VARCHAR', 'impressions': 'BIGINT', 'clicks': 'BIGINT', "
        "'latency': 'BIGINT', 'spend': 'DOUBLE'}) ORDER BY advertiser, timestamp",
        [args.csv],
    )
    load_ms = (time.perf_counter() - started) * 1000
    loaded = con.execute("SELECT count(*) FROM ad_events").fetchone()[0]
    if loaded != args.rows:
        sys.exit(f"duckdb loaded {loaded} rows, expected {args.rows}")
    print(f"duckdb {duckdb.__version__}: loaded {loaded} rows in {load_ms / 1000:.1f} s "
          f"({threads} threads)", file=sys.stderr)

    out = {"version": duckdb.__version__, "threads": threads, "load_ms": load_ms, "checks": {}}
    for key, make, summarize in queries(args, con):
        times = []
        for run in range(args.warmups + args.runs):
            sql, params = make(run)
            began = time.perf_counter()
            rows = con.execute(sql, params).fetchall()
            elapsed = (time.perf_counter() - began) * 1000
            if run == 0:
                out["checks"][key] = summarize(rows)
            if run >= args.warmups:
                times.append(elapsed)
        out[f"{key}_ms"] = statistics.median(times)
        print(f"duckdb: {key} {out[key + '_ms']:.2f} ms", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
