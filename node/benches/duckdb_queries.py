#!/usr/bin/env python3
"""The DuckDB reference of grove-node's `queries` benchmark (run by it; not on its own).

Loads the ad-events JSON lines into a native DuckDB table (explicit types; the millisecond
timestamps become TIMESTAMP) in time order (`load_ms` times this), copies it sorted by
advertiser then time (Grove's two layouts: `time` and `dim`), then runs the SQL equivalents of
the benchmark's queries on each: warm-up runs, then timed runs (execute + fetchall), and prints
one JSON object on the last line of stdout: `<query>_<layout>_ms` medians, `load_ms`,
`threads`, `version`, and `checks[layout][query]`, the answer summaries of every run (the same
the Rust side computes from Grove's answers, run by run). Progress goes to stderr.

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
WEEK = ("2024-06-01 00:00:00", "2024-06-08 00:00:00")
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


def queries(args, con, table):
    """(key, function of the run number returning the SQL, summary of the rows)."""
    day = f"timestamp >= TIMESTAMP '{DAY[0]}' AND timestamp < TIMESTAMP '{DAY[1]}'"
    week = f"timestamp >= TIMESTAMP '{WEEK[0]}' AND timestamp < TIMESTAMP '{WEEK[1]}'"

    def fixed(sql):
        return lambda run: sql

    def in_filter(count):
        def make(run):
            # A literal list, as a client would send it (Grove parses its values per query too).
            ids = ", ".join(f"'{i}'" for i in in_filter_ids(args.in_seed + run, count))
            return (
                "SELECT date_trunc('day', timestamp) AS day, advertiser, sum(clicks) AS clicks, "
                f"sum(spend) AS spend FROM {table} WHERE {day} AND advertiser IN ({ids}) "
                "GROUP BY ALL"
            )
        return make

    exact_campaigns = con.execute(
        f"SELECT count(DISTINCT campaign) FROM {table} WHERE {week}").fetchone()[0]
    groups_clicks = lambda rows: {"groups": len(rows), "clicks": sum(r[2] for r in rows)}
    top = lambda rows: {"rows": len(rows), "clicks": sum(r[1] for r in rows)}
    topn_sql = fixed(f"SELECT campaign, sum(clicks) AS clicks FROM {table} "
                     f"WHERE {week} AND country = '{TOP_COUNTRY}' "
                     "GROUP BY ALL ORDER BY clicks DESC, campaign LIMIT 100")
    return [
        ("count", fixed(f"SELECT count(*) FROM {table} WHERE {week}"),
         lambda rows: {"rows": rows[0][0]}),
        ("sum_by_hour",
         fixed(f"SELECT date_trunc('hour', timestamp) AS hour, sum(spend) FROM {table} "
               f"WHERE {week} GROUP BY ALL ORDER BY hour"),
         lambda rows: {"buckets": len(rows), "spend": sum(r[1] for r in rows)}),
        ("topn_country", topn_sql, top),
        ("groupby_country_device",
         fixed(f"SELECT country, device, count(*) FROM {table} WHERE {week} GROUP BY ALL"),
         lambda rows: {"groups": len(rows), "rows": sum(r[2] for r in rows)}),
        ("in_filter_1000", in_filter(args.in_ids), groups_clicks),
        ("approx_distinct",
         fixed(f"SELECT approx_count_distinct(campaign) FROM {table} WHERE {week}"),
         # Both engines' estimates are checked against the exact count (computed once, untimed):
         # two HLL estimates can disagree by more than either is off.
         lambda rows: {"campaigns": exact_campaigns, "duckdb_estimate": rows[0][0]}),
        ("point",
         fixed("SELECT count(*), sum(clicks), sum(spend) FROM " + table + " "
               f"WHERE advertiser = '{POINT_ADVERTISER}' AND timestamp >= "
               f"TIMESTAMP '{POINT_HOUR[0]}' AND timestamp < TIMESTAMP '{POINT_HOUR[1]}'"),
         lambda rows: {"rows": rows[0][0], "clicks": rows[0][1] or 0, "spend": rows[0][2] or 0.0}),
        ("groupby_campaign_top100",
         fixed(f"SELECT campaign, sum(clicks) AS clicks FROM {table} "
               f"WHERE {week} AND country = '{TOP_COUNTRY}' "
               "GROUP BY ALL ORDER BY clicks DESC LIMIT 100"),
         lambda rows: {"groups": len(rows), "clicks": sum(r[1] for r in rows)}),
        ("count_distinct_exact",
         fixed(f"SELECT count(DISTINCT campaign) FROM {table} WHERE {week}"),
         lambda rows: {"distinct": rows[0][0]}),
        ("groupby_advertiser_day",
         fixed(f"SELECT date_trunc('day', timestamp) AS day, advertiser, sum(clicks) AS clicks, "
               f"sum(spend) FROM {table} WHERE {week} GROUP BY ALL "
               "ORDER BY day, clicks DESC LIMIT 1000"),
         groups_clicks),
        ("groupby_campaign_filtered",
         fixed(f"SELECT campaign, count(*), sum(spend) FROM {table} WHERE {week} "
               "AND device = 'tablet' AND status_code = '500' GROUP BY ALL"),
         lambda rows: {"groups": len(rows), "rows": sum(r[1] for r in rows),
                       "spend": sum(r[2] for r in rows)}),
        ("in_filter_10000", in_filter(10_000), groups_clicks),
        ("in_filter_10000_sql", in_filter(10_000), groups_clicks),
        ("topn_country_exact", topn_sql, top),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
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
        "CREATE TABLE ad_time AS SELECT epoch_ms(timestamp) AS timestamp, "
        "advertiser, campaign, country, device, data_pack, status_code, impressions, clicks, "
        "latency, spend FROM read_json(?, format = 'newline_delimited', columns = {"
        "'timestamp': 'BIGINT', 'advertiser': 'VARCHAR', 'campaign': 'VARCHAR', "
        "'country': 'VARCHAR', 'device': 'VARCHAR', 'data_pack': 'VARCHAR', "
        "'status_code': 'VARCHAR', 'impressions': 'BIGINT', 'clicks': 'BIGINT', "
        "'latency': 'BIGINT', 'spend': 'DOUBLE'}) ORDER BY timestamp",
        [args.data],
    )
    load_ms = (time.perf_counter() - started) * 1000
    con.execute("CREATE TABLE ad_dim AS SELECT * FROM ad_time ORDER BY advertiser, timestamp")
    loaded = con.execute("SELECT count(*) FROM ad_time").fetchone()[0]
    if loaded != args.rows:
        sys.exit(f"duckdb loaded {loaded} rows, expected {args.rows}")
    print(f"duckdb {duckdb.__version__}: loaded {loaded} rows in {load_ms / 1000:.1f} s "
          f"({threads} threads)", file=sys.stderr)

    out = {"version": duckdb.__version__, "threads": threads, "load_ms": load_ms,
           "checks": {"time": {}, "dim": {}}}
    for layout, table in (("time", "ad_time"), ("dim", "ad_dim")):
        for key, make, summarize in queries(args, con, table):
            times = []
            checks = []
            for run in range(args.warmups + args.runs):
                sql = make(run)
                began = time.perf_counter()
                rows = con.execute(sql).fetchall()
                elapsed = (time.perf_counter() - began) * 1000
                checks.append(summarize(rows))
                if run >= args.warmups:
                    times.append(elapsed)
            out["checks"][layout][key] = checks
            out[f"{key}_{layout}_ms"] = statistics.median(times)
            print(f"duckdb: {key} {layout} {out[f'{key}_{layout}_ms']:.2f} ms", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
