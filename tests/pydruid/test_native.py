"""Native queries through pydruid's client, aggregators, filters, havings and post-aggregators
as pydruid writes them, each answer compared with DuckDB over the same rows."""

import pytest
from pydruid.utils import aggregators as agg
from pydruid.utils.dimensions import DimensionSpec, RegexExtraction, TimeFormatExtraction
from pydruid.utils.filters import Bound, Dimension, Filter, Interval
from pydruid.utils.having import Aggregation
from pydruid.utils.postaggregator import Const, Field

from conftest import DATASOURCE, INTERVAL, assert_rows_equal, close


def test_timeseries_by_day_with_post_aggregators(client, duck):
    q = client.timeseries(
        datasource=DATASOURCE,
        granularity="day",
        intervals=INTERVAL,
        aggregations={
            "count": agg.count("count"),
            "added": agg.longsum("added"),
            "deleted_max": agg.longmax("deleted"),
            "score_min": agg.doublemin("score"),
            "score_sum": agg.doublesum("score"),
        },
        post_aggregations={"avg_added": Field("added") / Field("count"), "plus": Field("added") + Const(1)},
        filter=Dimension("channel") == "#en",
    )
    got = [
        (
            r["timestamp"][:10],
            r["result"]["count"],
            r["result"]["added"],
            r["result"]["deleted_max"],
            r["result"]["score_min"],
            r["result"]["score_sum"],
            r["result"]["avg_added"],
            r["result"]["plus"],
        )
        for r in q.result
    ]
    expected = duck(
        """SELECT strftime(date_trunc('day', __time), '%Y-%m-%d'), count(*), sum(added),
                  max(deleted), min(score), sum(score), sum(added) / count(*), sum(added) + 1
           FROM wiki WHERE channel = '#en' GROUP BY 1 ORDER BY 1"""
    )
    assert_rows_equal(got, expected)


def test_topn_with_a_filter(client, duck):
    q = client.topn(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        dimension="page",
        metric="added",
        threshold=7,
        aggregations={"added": agg.longsum("added"), "rows": agg.count("count")},
        filter=~(Dimension("isRobot") == "true"),
    )
    got = [(r["page"], r["added"], r["rows"]) for r in q.result[0]["result"]]
    expected = duck(
        """SELECT page, sum(added), count(*) FROM wiki WHERE isRobot <> 'true'
           GROUP BY page ORDER BY 2 DESC, page LIMIT 7"""
    )
    assert_rows_equal(got, expected)


def test_groupby_with_having_and_limit_spec(client, duck):
    q = client.groupby(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        dimensions=["channel", "isRobot"],
        aggregations={"rows": agg.count("count"), "deleted": agg.longsum("deleted")},
        having=Aggregation("rows") > 100,
        limit_spec={
            "type": "default",
            "limit": 6,
            "columns": [{"dimension": "deleted", "direction": "descending"}],
        },
    )
    got = [(r["event"]["channel"], r["event"]["isRobot"], r["event"]["rows"], r["event"]["deleted"]) for r in q.result]
    expected = duck(
        """SELECT channel, isRobot, count(*), sum(deleted) FROM wiki GROUP BY 1, 2
           HAVING count(*) > 100 ORDER BY 4 DESC LIMIT 6"""
    )
    assert_rows_equal(got, expected)


FILTERS = [
    (Dimension("country") == "France", "country = 'France'"),
    (Dimension("country") != "France", "country <> 'France'"),
    (Filter(type="in", dimension="channel", values=["#de", "#fr"]), "channel IN ('#de', '#fr')"),
    (Filter(type="regex", dimension="page", pattern="^Page 1"), "regexp_matches(page, '^Page 1')"),
    (Filter(type="like", dimension="user", pattern="user1%"), "\"user\" LIKE 'user1%'"),
    (Bound(dimension="added", lower="1000", upper="2000", ordering="numeric"), "added BETWEEN 1000 AND 2000"),
    (
        Bound(dimension="page", lower="Page 10", upper="Page 20", upperStrict=True),
        "page >= 'Page 10' AND page < 'Page 20'",
    ),
    (
        Interval(dimension="__time", intervals=["2024-01-02T06:00:00Z/2024-01-02T18:00:00Z"]),
        "__time >= TIMESTAMP '2024-01-02 06:00:00' AND __time < TIMESTAMP '2024-01-02 18:00:00'",
    ),
    (Filter(type="search", dimension="country", value="an"), "lower(country) LIKE '%an%'"),
    (
        Filter(type="columnComparison", dimensions=["channel", "channel"]),
        "channel IS NOT NULL",
    ),
    (
        (Dimension("channel") == "#en") | (Dimension("channel") == "#ja") & ~(Dimension("country") == "Japan"),
        "channel = '#en' OR (channel = '#ja' AND country <> 'Japan')",
    ),
    (
        Filter(type="selector", dimension="page", value="0", extraction_function=RegexExtraction("Page (\\d)")),
        "regexp_extract(page, 'Page (\\d)', 1) = '0'",
    ),
]


@pytest.mark.parametrize("druid_filter,sql", FILTERS, ids=[s for _, s in FILTERS])
def test_filters_match_sql(client, duck, druid_filter, sql):
    q = client.timeseries(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        aggregations={"rows": agg.count("count"), "added": agg.longsum("added")},
        filter=druid_filter,
    )
    got = [(q.result[0]["result"]["rows"], q.result[0]["result"]["added"])]
    expected = duck(f"SELECT count(*), sum(added) FROM wiki WHERE {sql}")
    assert_rows_equal(got, expected)


def test_filtered_aggregators_and_greatest(client, duck):
    from pydruid.utils.postaggregator import DoubleGreatest

    q = client.timeseries(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        aggregations={
            "robots": agg.filtered(Dimension("isRobot") == "true", agg.count("count")),
            "humans": agg.filtered(Dimension("isRobot") == "false", agg.longsum("added")),
            "max_score": agg.doublemax("score"),
        },
        post_aggregations={"g": DoubleGreatest([Field("robots"), Field("max_score")])},
    )
    r = q.result[0]["result"]
    expected = duck(
        """SELECT count(*) FILTER (WHERE isRobot = 'true'), sum(added) FILTER (WHERE isRobot = 'false'),
                  max(score), greatest(count(*) FILTER (WHERE isRobot = 'true'), max(score))
           FROM wiki"""
    )
    assert_rows_equal([(r["robots"], r["humans"], r["max_score"], r["g"])], expected)


def test_extraction_dimensions(client, duck):
    q = client.groupby(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        dimensions=[
            DimensionSpec("__time", "hour", extraction_function=TimeFormatExtraction("HH")),
        ],
        aggregations={"rows": agg.count("count")},
    )
    got = [(r["event"]["hour"], r["event"]["rows"]) for r in q.result]
    expected = duck("SELECT strftime(__time, '%H'), count(*) FROM wiki GROUP BY 1 ORDER BY 1")
    assert_rows_equal(got, expected)


def test_distinct_counts_are_close(client, duck):
    q = client.timeseries(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        aggregations={"pages": agg.cardinality("page"), "users": agg.cardinality(["user", "channel"], by_row=True)},
    )
    r = q.result[0]["result"]
    (pages, pairs), = duck('SELECT count(DISTINCT page), count(DISTINCT ("user", channel)) FROM wiki')
    assert abs(r["pages"] - pages) <= 0.05 * pages
    assert abs(r["users"] - pairs) <= 0.05 * pairs


def test_time_boundary_segment_metadata_and_scan(client, duck):
    q = client.time_boundary(datasource=DATASOURCE)
    (lo, hi), = duck(
        "SELECT strftime(min(__time), '%Y-%m-%dT%H:%M:%S.%gZ'), strftime(max(__time), '%Y-%m-%dT%H:%M:%S.%gZ') FROM wiki"
    )
    assert q.result[0]["result"] == {"minTime": lo, "maxTime": hi}
    q = client.segment_metadata(datasource=DATASOURCE, intervals=INTERVAL, merge=True)
    (rows,), = duck("SELECT count(*) FROM wiki")
    assert q.result[0]["numRows"] == rows
    assert q.result[0]["columns"]["channel"]["type"] == "STRING"
    q = client.scan(
        datasource=DATASOURCE,
        granularity="all",
        intervals=INTERVAL,
        columns=["__time", "page", "added"],
        limit=5,
        order="ascending",
        filter=Dimension("channel") == "#fr",
    )
    got = [(e["page"], e["added"]) for batch in q.result for e in batch["events"]]
    expected = duck("SELECT page, added FROM wiki WHERE channel = '#fr' ORDER BY __time, page LIMIT 5")
    assert got == [tuple(r) for r in expected]


def test_unsupported_is_a_clear_400(client):
    with pytest.raises(IOError) as raised:
        client.timeseries(
            datasource=DATASOURCE,
            granularity="all",
            intervals=INTERVAL,
            aggregations={"rows": agg.count("count")},
            filter=Filter(type="javascript", dimension="page", function="function(x){return true}"),
        )
    assert "400" in str(raised.value) and "javascript" in str(raised.value)
