"""Druid SQL through pydruid's DB-API and SQLAlchemy `druid://` dialect (including the
inspector, as Superset uses it), each answer compared with DuckDB over the same rows."""

import pytest
from sqlalchemy import create_engine, inspect, text

from conftest import DATASOURCE, assert_rows_equal


@pytest.fixture(scope="session")
def host_port(grove_url):
    host_port = grove_url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="session")
def connection(host_port, rows):
    from pydruid.db import connect

    host, port = host_port
    return connect(host=host, port=port, path="/druid/v2/sql/", scheme="http")


@pytest.fixture(scope="session")
def engine(host_port, rows):
    host, port = host_port
    return create_engine(f"druid://{host}:{port}/druid/v2/sql/")


SQL = [
    (
        "SELECT channel, COUNT(*) AS n, SUM(added) AS s FROM wiki WHERE isRobot = 'false' GROUP BY channel ORDER BY channel",
        None,
    ),
    (
        "SELECT page, SUM(deleted) AS d FROM wiki WHERE country IN ('France', 'Japan') GROUP BY page ORDER BY d DESC, page LIMIT 5",
        None,
    ),
    ("SELECT COUNT(*), MIN(added), MAX(score), AVG(deleted) FROM wiki", None),
    (
        "SELECT country, COUNT(*) FROM wiki WHERE country IS NOT NULL AND added > 2500 GROUP BY country HAVING COUNT(*) > 10 ORDER BY 2 DESC, 1",
        None,
    ),
    (
        "SELECT FLOOR(__time TO DAY) AS d, SUM(added) FROM wiki GROUP BY 1 ORDER BY 1",
        "SELECT date_trunc('day', __time), SUM(added) FROM wiki GROUP BY 1 ORDER BY 1",
    ),
    (
        "SELECT CASE WHEN added > 2500 THEN 'big' ELSE 'small' END AS size, COUNT(*), SUM(deleted) / COUNT(*) "
        "FROM wiki GROUP BY 1 ORDER BY 1",
        "SELECT CASE WHEN added > 2500 THEN 'big' ELSE 'small' END, COUNT(*), SUM(deleted) // COUNT(*) "
        "FROM wiki GROUP BY 1 ORDER BY 1",
    ),
    (
        "SELECT UPPER(COALESCE(country, 'unknown')) AS c, SUM(CAST(score AS BIGINT)) FROM wiki "
        "WHERE CHAR_LENGTH(page) = 7 GROUP BY 1 ORDER BY 1",
        "SELECT UPPER(COALESCE(country, 'unknown')), SUM(CAST(trunc(score) AS BIGINT)) FROM wiki "
        "WHERE length(page) = 7 GROUP BY 1 ORDER BY 1",
    ),
    (
        "SELECT TIME_FORMAT(__time, 'yyyy-MM-dd HH') AS h, COUNT(*) FROM wiki WHERE channel = '#ja' "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
        "SELECT strftime(__time, '%Y-%m-%d %H'), COUNT(*) FROM wiki WHERE channel = '#ja' "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5",
    ),
    (
        "SELECT EXTRACT(HOUR FROM __time) AS h, SUM(added) FROM wiki WHERE added % 7 = 0 GROUP BY 1 ORDER BY 1",
        "SELECT EXTRACT(HOUR FROM __time), SUM(added) FROM wiki WHERE added % 7 = 0 GROUP BY 1 ORDER BY 1",
    ),
    (
        "SELECT channel, COUNT(*) FROM wiki WHERE TIME_IN_INTERVAL(__time, '2024-01-02/2024-01-03') "
        "AND deleted > added / 20 GROUP BY 1 ORDER BY 1",
        "SELECT channel, COUNT(*) FROM wiki WHERE __time >= TIMESTAMP '2024-01-02' "
        "AND __time < TIMESTAMP '2024-01-03' AND deleted > added // 20 GROUP BY 1 ORDER BY 1",
    ),
    (
        "SELECT channel, SUM(added) FROM wiki GROUP BY channel ORDER BY 2 DESC LIMIT 3",
        "SELECT channel, SUM(added) FROM wiki GROUP BY channel ORDER BY 2 DESC LIMIT 3",
    ),
]


def normalize(value):
    """Druid SQL writes timestamps as ISO text; DuckDB returns datetimes."""
    if hasattr(value, "isoformat"):
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return value


@pytest.mark.parametrize("druid_sql,duck_sql", SQL, ids=[q for q, _ in SQL])
def test_dbapi_answers_match_duckdb(connection, duck, druid_sql, duck_sql):
    cursor = connection.cursor()
    cursor.execute(druid_sql)
    got = [tuple(row) for row in cursor.fetchall()]
    expected = [tuple(normalize(v) for v in row) for row in duck(duck_sql or druid_sql)]
    assert_rows_equal(got, expected)


def test_dbapi_parameters_and_description(connection, duck):
    cursor = connection.cursor()
    cursor.execute(
        "SELECT channel, COUNT(*) AS n FROM wiki WHERE channel = %(ch)s GROUP BY channel",
        {"ch": "#ja"},
    )
    rows = cursor.fetchall()
    assert [c[0] for c in cursor.description] == ["channel", "n"]
    assert_rows_equal([tuple(r) for r in rows], duck("SELECT channel, COUNT(*) FROM wiki WHERE channel = '#ja' GROUP BY channel"))


def test_sqlalchemy_inspector_and_queries(engine, duck):
    inspector = inspect(engine)
    assert DATASOURCE in inspector.get_table_names()
    assert inspector.has_table(DATASOURCE)
    assert not inspector.has_table("nope")
    assert "druid" in inspector.get_schema_names()
    columns = {c["name"]: c for c in inspector.get_columns(DATASOURCE)}
    assert {"__time", "channel", "added", "score", "count"} <= set(columns)
    assert str(columns["added"]["type"]) == "BIGINT"
    assert str(columns["channel"]["type"]) == "VARCHAR"
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT isRobot, SUM(added) AS s FROM wiki GROUP BY isRobot ORDER BY isRobot")
        ).fetchall()
    assert_rows_equal([tuple(r) for r in got], duck("SELECT isRobot, SUM(added) FROM wiki GROUP BY 1 ORDER BY 1"))


def test_context_union_and_explain(host_port, duck):
    from pydruid.db import connect

    host, port = host_port
    exact = connect(
        host=host, port=port, path="/druid/v2/sql/", scheme="http",
        context={"useApproximateTopN": False, "sqlOuterLimit": 2},
    ).cursor()
    exact.execute("SELECT page, SUM(added) FROM wiki GROUP BY page ORDER BY 2 DESC, 1 LIMIT 4")
    assert_rows_equal(
        [tuple(r) for r in exact.fetchall()],
        duck("SELECT page, SUM(added) FROM wiki GROUP BY page ORDER BY 2 DESC, 1 LIMIT 2"),
    )
    cursor = connect(host=host, port=port, path="/druid/v2/sql/", scheme="http").cursor()
    cursor.execute(
        "SELECT 'en' AS k, COUNT(*) FROM wiki WHERE channel = '#en' "
        "UNION ALL SELECT 'de', COUNT(*) FROM wiki WHERE channel = '#de'"
    )
    assert_rows_equal(
        [tuple(r) for r in cursor.fetchall()],
        duck(
            "SELECT 'en', COUNT(*) FROM wiki WHERE channel = '#en' "
            "UNION ALL SELECT 'de', COUNT(*) FROM wiki WHERE channel = '#de'"
        ),
    )
    cursor.execute("EXPLAIN PLAN FOR SELECT COUNT(*) FROM wiki")
    plan = cursor.fetchall()[0][0]
    assert '"queryType":"timeseries"' in plan


def test_sql_errors_are_clear(connection):
    from pydruid.db.exceptions import ProgrammingError

    cursor = connection.cursor()
    with pytest.raises(ProgrammingError) as raised:
        cursor.execute("SELECT nope FROM wiki")
    assert "nope" in str(raised.value)
