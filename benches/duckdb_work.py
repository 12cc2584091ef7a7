"""The same work as `crmdq ingest` and `crmdq score`, done by DuckDB (the script a data
engineer would write instead): read the NDJSON, apply the contract's checks in SQL, write
Parquet partitioned by record type and business date, then aggregate per person and day.

Where SQL cannot match crmdq exactly (stated in benches/README.md): phone validity is a
regular expression for Chinese mobile numbers instead of libphonenumber's metadata, NFKC
width folding is not applied to placeholders, malformed JSON lines are skipped instead of
kept as dead letters, and the score is the plain mean of the three rates (no roster join,
no role scorecards).

    python3 duckdb_work.py ingest INPUT.ndjson OUT_DIR NOW
    python3 duckdb_work.py score OUT_DIR
    python3 duckdb_work.py counts OUT_DIR      # JSON: per record type rows/complete/valid/on_time
"""

import json
import sys

import duckdb

PLACEHOLDERS = [
    "", "unknown", "n/a", "na", "none", "null", "-", "--", "?", "无", "未知", "不详",
    "暂无", "空", "test", "测试", "xxx",
]
KEY_FIELDS = {
    "customer": ["phone", "occupation", "age"],
    "activity": ["customer_id", "kind", "outcome"],
    "service_ticket": ["customer_id", "category", "satisfaction"],
    "opportunity": ["customer_id", "stage", "amount"],
    "order": ["customer_id", "amount"],
    "checkin": ["channel"],
}
TEXT = [
    "record_type", "record_id", "version", "owner_id", "entered_by", "team_id", "event_time",
    "entered_at", "name", "phone", "occupation", "age", "gender", "id_number", "city",
    "customer_id", "kind", "outcome", "channel", "category", "closed_at", "satisfaction",
    "complaint", "stage", "previous_stage", "amount", "currency", "opportunity_id",
    "responded_at", "response_complete",
]


def ph(col):
    """`col` is missing: absent or a placeholder (trimmed, case-folded)."""
    lst = ", ".join("'" + p.replace("'", "''") + "'" for p in PLACEHOLDERS)
    return f"({col} IS NULL OR lower(trim({col})) IN ({lst}))"


_P = "regexp_replace(trim(phone), '[\\s\\-()]', '', 'g')"
PHONE_NORM = (
    f"CASE WHEN starts_with({_P}, '+86') THEN substr({_P}, 4) "
    f"WHEN starts_with({_P}, '0086') THEN substr({_P}, 5) "
    f"WHEN starts_with({_P}, '86') AND length({_P}) = 13 THEN substr({_P}, 3) ELSE {_P} END"
)


def ingest(src, out, now):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    cols = ", ".join(f"'{c}': 'VARCHAR'" for c in TEXT)
    con.execute(
        f"""CREATE TEMP TABLE raw AS
        SELECT row_number() OVER () AS line, * FROM read_json('{src}', format = 'newline_delimited',
            columns = {{{cols}}}, ignore_errors = true, maximum_object_size = 16777216)"""
    )
    phone_missing = (
        f"({ph('phone')} OR length(replace(p_norm, substr(p_norm, 1, 1), '')) = 0 "
        "OR strpos('012345678901234567890', p_norm) > 0 OR strpos('987654321098765432109', p_norm) > 0 "
        "OR p_norm IN ('13800138000', '13888888888', '13900000000'))"
    )
    age_missing = f"({ph('age')} OR trim(age) = '0')"
    missing = {f: ph(f) for f in TEXT}
    missing["phone"] = phone_missing
    missing["age"] = age_missing
    complete = " CASE record_type " + " ".join(
        f"WHEN '{rt}' THEN NOT ({' OR '.join(missing[f] for f in fs)})" for rt, fs in KEY_FIELDS.items()
    ) + " END"
    pres = lambda f: f"NOT {missing[f]}"  # noqa: E731
    ints = lambda f: f"TRY_CAST(trim({f}) AS BIGINT)"  # noqa: E731
    nums = lambda f: f"TRY_CAST(trim({f}) AS DOUBLE)"  # noqa: E731
    weights = "[7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2]"
    id_sum = f"list_sum(list_transform(range(17), lambda i: TRY_CAST(substr(id_number, i + 1, 1) AS INTEGER) * {weights}[i + 1]))"
    id_valid = (
        "(regexp_matches(id_number, '^\\d{17}[\\dXx]$') "
        "AND TRY_STRPTIME(substr(id_number, 7, 8), '%Y%m%d') IS NOT NULL "
        f"AND upper(substr(id_number, 18, 1)) = substr('10X98765432', CAST({id_sum} % 11 AS BIGINT) + 1, 1))"
    )
    id_age = (
        "(date_diff('year', CAST(TRY_STRPTIME(substr(id_number, 7, 8), '%Y%m%d') AS DATE), CAST(ev AS DATE)) "
        "- CASE WHEN strftime(CAST(ev AS DATE), '%m%d') < substr(id_number, 11, 4) THEN 1 ELSE 0 END)"
    )
    failed = [
        # wrong kinds
        f"({pres('age')} AND {ints('age')} IS NULL)",
        f"({pres('satisfaction')} AND {ints('satisfaction')} IS NULL)",
        f"({pres('amount')} AND {nums('amount')} IS NULL)",
        # plausibility
        f"({pres('phone')} AND NOT regexp_matches(p_norm, '^1[3-9]\\d{{9}}$'))",
        f"({pres('age')} AND ({ints('age')} < 16 OR {ints('age')} > 100))",
        f"({pres('id_number')} AND NOT {id_valid})",
        f"({pres('id_number')} AND {pres('age')} AND {id_valid} AND abs({id_age} - {ints('age')}) > 1)",
        f"({pres('satisfaction')} AND ({ints('satisfaction')} < 1 OR {ints('satisfaction')} > 5))",
        f"({pres('amount')} AND {nums('amount')} < 0)",
        f"({pres('stage')} AND lower(trim(stage)) NOT IN ('lead','qualified','proposal','negotiation','won','lost'))",
        f"({pres('kind')} AND lower(trim(kind)) NOT IN ('visit','call','message','meeting'))",
        "(TRY_CAST(closed_at AS TIMESTAMPTZ) < ev)",
        "(TRY_CAST(responded_at AS TIMESTAMPTZ) < ev)",
        "(et < ev - INTERVAL 300 SECOND)",
        f"(et > TIMESTAMPTZ '{now}' + INTERVAL 300 SECOND)",
    ]
    valid = "NOT (" + " OR ".join(f"coalesce({c}, false)" for c in failed) + ")"
    con.execute(
        f"""CREATE TEMP TABLE checked AS
        WITH t AS (
            SELECT *, TRY_CAST(event_time AS TIMESTAMPTZ) AS ev, TRY_CAST(entered_at AS TIMESTAMPTZ) AS et,
                   {PHONE_NORM} AS p_norm
            FROM raw
            WHERE record_type IN ('customer','activity','service_ticket','opportunity','order','checkin')
              AND record_id IS NOT NULL AND entered_by IS NOT NULL
        )
        SELECT *, CAST(ev AS DATE) AS dt,
               {complete} AS dq_complete,
               {valid} AS dq_valid,
               et <= timezone('Asia/Shanghai', CAST(CAST(ev AS DATE) + 1 AS TIMESTAMP) + INTERVAL 10 HOUR) AS dq_on_time
        FROM t WHERE ev IS NOT NULL AND et IS NOT NULL"""
    )
    con.execute(
        f"COPY (SELECT * EXCLUDE (p_norm) FROM checked) TO '{out}/records' "
        "(FORMAT parquet, PARTITION_BY (record_type, dt), COMPRESSION zstd, OVERWRITE_OR_IGNORE true)"
    )


def score(out):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    con.execute(
        f"""COPY (
            WITH e AS (
                SELECT * FROM read_parquet('{out}/records/*/*/*.parquet', hive_partitioning = true)
                QUALIFY row_number() OVER (PARTITION BY record_type, record_id, coalesce(version, '1') ORDER BY line) = 1
            )
            SELECT dt, entered_by AS person_id, COUNT(*) AS entries,
                   avg(dq_complete::INT) AS completeness_rate, avg(dq_valid::INT) AS validity_rate,
                   avg(dq_on_time::INT) AS timeliness_rate,
                   100 * (avg(dq_complete::INT) + avg(dq_valid::INT) + avg(dq_on_time::INT)) / 3 AS score
            FROM e GROUP BY ALL
        ) TO '{out}/person_daily' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)"""
    )


def counts(out):
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT record_type, COUNT(*), SUM(dq_complete::INT), SUM(dq_valid::INT), SUM(dq_on_time::INT)
        FROM read_parquet('{out}/records/*/*/*.parquet', hive_partitioning = true)
        GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    print(json.dumps({r[0]: {"rows": r[1], "complete": r[2], "valid": r[3], "on_time": r[4]} for r in rows}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ingest":
        ingest(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "score":
        score(sys.argv[2])
    elif cmd == "counts":
        counts(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
