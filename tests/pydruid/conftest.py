"""The pydruid acceptance suite's fixtures: a running `grove serve` (its URL in GROVE_URL, started
by `node/tests/pydruid.rs`), a deterministic data set ingested into it through Druid's task API,
and the same rows in an in-memory DuckDB table that every answer is compared with."""

import json
import os
import random
import time
import urllib.request

import duckdb
import pytest

DATASOURCE = "wiki"
INTERVAL = "2024-01-01/2024-01-04"
ROWS = 3000
CHANNELS = ["#en", "#de", "#fr", "#ja", "#es"]
COUNTRIES = ["United States", "Germany", "France", "Japan", "Spain", None]


def make_rows():
    """Seeded rows: strings with nulls, longs, a double with nulls, three days of times."""
    rng = random.Random(42)
    rows = []
    start = 1704067200000  # 2024-01-01T00:00:00Z
    for i in range(ROWS):
        ms = start + rng.randrange(3 * 86_400_000)
        rows.append(
            {
                "time": ms,
                "channel": rng.choice(CHANNELS),
                "page": f"Page {rng.randrange(60):02d}",
                "user": f"user{rng.randrange(40)}",
                "country": rng.choice(COUNTRIES),
                "isRobot": rng.choice(["true", "false", "false"]),
                "added": rng.randrange(0, 5000),
                "deleted": rng.randrange(0, 300),
                "score": None if rng.random() < 0.15 else round(rng.uniform(-50, 50), 3),
            }
        )
    return rows


def _request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read().decode())


def _iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".%03dZ" % (ms % 1000)


@pytest.fixture(scope="session")
def grove_url():
    url = os.environ.get("GROVE_URL")
    if not url:
        pytest.fail("GROVE_URL is not set: run this suite through `cargo test` (node/tests/pydruid.rs)")
    return url.rstrip("/")


@pytest.fixture(scope="session")
def rows(grove_url, tmp_path_factory):
    rows = make_rows()
    directory = tmp_path_factory.mktemp("wiki")
    with open(directory / "wiki.json", "w") as out:
        for r in rows:
            line = dict(r)
            line["time"] = _iso(r["time"])
            # Druid reads an absent field as null; write nulls by leaving them out.
            out.write(json.dumps({k: v for k, v in line.items() if v is not None}) + "\n")
    spec = {
        "type": "index_parallel",
        "spec": {
            "dataSchema": {
                "dataSource": DATASOURCE,
                "timestampSpec": {"column": "time", "format": "iso"},
                "dimensionsSpec": {
                    "dimensions": [
                        "channel",
                        "page",
                        "user",
                        "country",
                        "isRobot",
                        {"type": "long", "name": "added"},
                        {"type": "long", "name": "deleted"},
                        {"type": "double", "name": "score"},
                    ]
                },
                "metricsSpec": [{"type": "count", "name": "count"}],
                "granularitySpec": {
                    "segmentGranularity": "day",
                    "queryGranularity": "none",
                    "rollup": False,
                },
            },
            "ioConfig": {
                "type": "index_parallel",
                "inputSource": {"type": "local", "baseDir": str(directory), "filter": "wiki.json"},
                "inputFormat": {"type": "json"},
            },
            "tuningConfig": {"type": "index_parallel"},
        },
    }
    task = _request(f"{grove_url}/druid/indexer/v1/task", spec)["task"]
    deadline = time.time() + 120
    while True:
        status = _request(f"{grove_url}/druid/indexer/v1/task/{task}/status")["status"]
        if status["status"] == "SUCCESS":
            break
        assert status["status"] == "RUNNING", status
        assert time.time() < deadline, "ingestion did not finish in 120 s"
        time.sleep(0.2)
    return rows


@pytest.fixture(scope="session")
def duck(rows):
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE wiki (__time TIMESTAMP, channel VARCHAR, page VARCHAR, \"user\" VARCHAR, "
        "country VARCHAR, isRobot VARCHAR, added BIGINT, deleted BIGINT, score DOUBLE)"
    )
    con.executemany(
        "INSERT INTO wiki VALUES (epoch_ms(?), ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r["time"],
                r["channel"],
                r["page"],
                r["user"],
                r["country"],
                r["isRobot"],
                r["added"],
                r["deleted"],
                r["score"],
            )
            for r in rows
        ],
    )

    def query(sql):
        return con.execute(sql).fetchall()

    return query


@pytest.fixture(scope="session")
def client(grove_url, rows):
    from pydruid.client import PyDruid

    return PyDruid(grove_url, "druid/v2")


def close(a, b, rel=1e-9):
    """Numbers equal up to rounding (sums of doubles add in a different order)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= rel * max(1.0, abs(a), abs(b))
    return a == b


def assert_rows_equal(got, expected):
    assert len(got) == len(expected), f"{len(got)} rows, expected {len(expected)}:\n{got}\n{expected}"
    for g, e in zip(got, expected):
        assert len(g) == len(e), (g, e)
        for x, y in zip(g, e):
            assert close(x, y), f"row {g} != expected {e}"
