"""The same work as `crmdq ingest` and `crmdq score`, done by DuckDB (the script a data
engineer would write instead): read the NDJSON, apply the contract's checks in SQL, write
Parquet partitioned by record type and business date, then aggregate per person and day.

Where SQL cannot match crmdq exactly (stated in benches/README.md): phone validity is a
regular expression for Chinese mobile numbers instead of libphonenumber's metadata, NFKC
width folding is not applied to placeholders, malformed JSON lines are skipped instead of
kept as dead letters, and the first delivery of a record version is the first line in the
file (crmdq orders by ingestion time, then source position). The scoring is crmdq's
(crates/score/src/sql.rs): roster at each date, record and off-roster teams, role KPIs and
scorecards, person_daily, team_daily and rule_daily.

    python3 duckdb_work.py ingest INPUT.ndjson OUT_DIR NOW
    python3 duckdb_work.py score OUT_DIR ROSTER.csv SCORECARDS_JSON
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
    failed = {
        # wrong kinds
        "age.type": f"({pres('age')} AND {ints('age')} IS NULL)",
        "satisfaction.type": f"({pres('satisfaction')} AND {ints('satisfaction')} IS NULL)",
        "amount.type": f"({pres('amount')} AND {nums('amount')} IS NULL)",
        # plausibility
        "phone.format": f"({pres('phone')} AND NOT regexp_matches(p_norm, '^1[3-9]\\d{{9}}$'))",
        "age.range": f"({pres('age')} AND ({ints('age')} < 16 OR {ints('age')} > 100))",
        "id_number.checksum": f"({pres('id_number')} AND NOT {id_valid})",
        "id_number.age_mismatch": f"({pres('id_number')} AND {pres('age')} AND {id_valid} AND abs({id_age} - {ints('age')}) > 1)",
        "satisfaction.range": f"({pres('satisfaction')} AND ({ints('satisfaction')} < 1 OR {ints('satisfaction')} > 5))",
        "amount.negative": f"({pres('amount')} AND {nums('amount')} < 0)",
        "stage.enum": f"({pres('stage')} AND lower(trim(stage)) NOT IN ('lead','qualified','proposal','negotiation','won','lost'))",
        "kind.enum": f"({pres('kind')} AND lower(trim(kind)) NOT IN ('visit','call','message','meeting'))",
        "closed_at.before_event": "(TRY_CAST(closed_at AS TIMESTAMPTZ) < ev)",
        "responded_at.before_event": "(TRY_CAST(responded_at AS TIMESTAMPTZ) < ev)",
        "entered_at.before_event": "(et < ev - INTERVAL 300 SECOND)",
        "entered_at.future": f"(et > TIMESTAMPTZ '{now}' + INTERVAL 300 SECOND)",
    }
    # The names of the failed checks and of the missing key fields, as crmdq's rule_daily
    # counts them.
    failed_list = "list_filter([" + ", ".join(
        f"CASE WHEN coalesce({c}, false) THEN '{n}' END" for n, c in failed.items()
    ) + "], lambda x: x IS NOT NULL)"
    missing_list = " CASE record_type " + " ".join(
        f"WHEN '{rt}' THEN list_filter([" + ", ".join(f"CASE WHEN {missing[f]} THEN '{f}' END" for f in fs)
        + "], lambda x: x IS NOT NULL)" for rt, fs in KEY_FIELDS.items()
    ) + " END"
    valid = "NOT (" + " OR ".join(f"coalesce({c}, false)" for c in failed.values()) + ")"
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
               et <= timezone('Asia/Shanghai', CAST(CAST(ev AS DATE) + 1 AS TIMESTAMP) + INTERVAL 10 HOUR) AS dq_on_time,
               greatest(0, epoch(et) - epoch(timezone('Asia/Shanghai', CAST(CAST(ev AS DATE) + 1 AS TIMESTAMP) + INTERVAL 10 HOUR)))::BIGINT AS dq_late_seconds,
               {missing_list} AS dq_missing_fields,
               {failed_list} AS dq_failed_checks
        FROM t WHERE ev IS NOT NULL AND et IS NOT NULL"""
    )
    con.execute(
        f"COPY (SELECT * EXCLUDE (p_norm) FROM checked) TO '{out}/records' "
        "(FORMAT parquet, PARTITION_BY (record_type, dt), COMPRESSION zstd, OVERWRITE_OR_IGNORE true)"
    )


def score(out, roster, weights):
    """crmdq's scoring (`crates/score/src/sql.rs`) in DuckDB SQL: first delivery of each
    record version, roster row at each date, record teams, off-roster teams, role KPIs,
    role scorecards; person_daily, team_daily and rule_daily, partitioned by date."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    card = json.loads(weights)

    def score_expr(c):
        num = " + ".join(f"coalesce({w} * {m}, 0.0)" for m, w in c.items())
        den = " + ".join(f"CASE WHEN {m} IS NULL THEN 0.0 ELSE {w} END" for m, w in c.items())
        return f"100.0 * ({num}) / nullif({den}, 0.0)"

    roles = " ".join(f"WHEN '{r}' THEN {score_expr(c)}" for r, c in card.items() if r not in ("default", "team"))
    default = card.get("default", {"completeness_rate": 1, "validity_rate": 1, "timeliness_rate": 1})
    team = card.get("team", default)
    con.execute(f"CREATE TEMP TABLE roster AS SELECT * FROM read_csv('{roster}', header = true, all_varchar = true)")
    con.execute(
        f"""CREATE TEMP TABLE entries AS
        SELECT * FROM read_parquet('{out}/records/*/*/*.parquet', hive_partitioning = true)
        QUALIFY row_number() OVER (PARTITION BY record_type, record_id, version ORDER BY line) = 1"""
    )
    con.execute(
        """CREATE TEMP TABLE roster_at AS
        SELECT p.person_id, p.dt, r.role, r.team_id, r.manager_id
        FROM (SELECT DISTINCT entered_by AS person_id, dt FROM entries UNION SELECT DISTINCT owner_id, dt FROM entries) p
        JOIN roster r ON r.person_id = p.person_id
          AND (r.valid_from IS NULL OR CAST(r.valid_from AS DATE) <= CAST(p.dt AS DATE))
          AND (r.valid_to IS NULL OR CAST(p.dt AS DATE) <= CAST(r.valid_to AS DATE))
        QUALIFY row_number() OVER (PARTITION BY p.person_id, p.dt ORDER BY r.valid_from DESC NULLS LAST) = 1"""
    )
    con.execute(
        """CREATE TEMP TABLE offroster_team AS
        SELECT entered_by AS person_id, dt, record_team AS team_id FROM (
          SELECT e.entered_by, e.dt, coalesce(e.team_id, o.team_id) AS record_team
          FROM entries e LEFT JOIN roster_at o ON o.person_id = e.owner_id AND o.dt = e.dt)
        WHERE record_team IS NOT NULL GROUP BY entered_by, dt, record_team
        QUALIFY row_number() OVER (PARTITION BY entered_by, dt ORDER BY count(*) DESC, record_team) = 1"""
    )
    con.execute(
        f"""CREATE TEMP TABLE person_base AS
        WITH q AS (
          SELECT entered_by AS person_id, dt, count(*) AS entries, sum(dq_complete::INT) AS complete_entries,
                 sum(dq_valid::INT) AS valid_entries, sum(dq_on_time::INT) AS on_time_entries,
                 sum(dq_late_seconds) AS late_seconds
          FROM entries GROUP BY ALL),
        t AS (
          SELECT owner_id AS person_id, dt, count(*) AS tickets,
                 avg(CASE WHEN TRY_CAST(satisfaction AS INT) BETWEEN 1 AND 5 THEN TRY_CAST(satisfaction AS INT) END) AS mean_satisfaction,
                 avg(TRY_CAST(complaint AS BOOLEAN)::INT) AS complaint_rate
          FROM entries WHERE record_type = 'service_ticket' GROUP BY ALL),
        c AS (
          SELECT owner_id AS person_id, dt, count(*) AS checkins,
                 avg(CASE WHEN responded_at IS NOT NULL AND TRY_CAST(response_complete AS BOOLEAN) THEN 1.0 ELSE 0.0 END) AS checkin_response_rate
          FROM entries WHERE record_type = 'checkin' GROUP BY ALL),
        k AS (
          SELECT owner_id AS person_id, dt,
                 sum(CASE WHEN lower(stage) IN ('won', 'lost') THEN 1 ELSE 0 END) AS opportunities_closed,
                 sum(CASE WHEN lower(stage) = 'won' THEN 1 ELSE 0 END) / nullif(sum(CASE WHEN lower(stage) IN ('won', 'lost') THEN 1 ELSE 0 END), 0) AS win_rate
          FROM entries WHERE record_type = 'opportunity' GROUP BY ALL),
        p AS (
          SELECT person_id, dt FROM (
            SELECT person_id, dt FROM q UNION SELECT person_id, dt FROM t
            UNION SELECT person_id, dt FROM c UNION SELECT person_id, dt FROM k WHERE opportunities_closed > 0)
          WHERE person_id <> 'unassigned')
        SELECT p.dt, p.person_id, coalesce(r.role, 'unknown') AS role, coalesce(r.team_id, o.team_id, 'unassigned') AS team_id,
               r.manager_id, coalesce(q.entries, 0) AS entries, coalesce(q.complete_entries, 0) AS complete_entries,
               coalesce(q.valid_entries, 0) AS valid_entries, coalesce(q.on_time_entries, 0) AS on_time_entries,
               coalesce(q.late_seconds, 0) AS late_seconds,
               q.complete_entries / nullif(q.entries, 0) AS completeness_rate,
               q.valid_entries / nullif(q.entries, 0) AS validity_rate,
               q.on_time_entries / nullif(q.entries, 0) AS timeliness_rate,
               coalesce(t.tickets, 0) AS tickets, t.mean_satisfaction, t.complaint_rate,
               (t.mean_satisfaction - 1.0) / 4.0 AS satisfaction_rate, 1.0 - t.complaint_rate AS complaint_free_rate,
               coalesce(c.checkins, 0) AS checkins, c.checkin_response_rate,
               coalesce(k.opportunities_closed, 0) AS opportunities_closed, k.win_rate
        FROM p
        LEFT JOIN roster_at r ON r.person_id = p.person_id AND r.dt = p.dt
        LEFT JOIN offroster_team o ON o.person_id = p.person_id AND o.dt = p.dt
        LEFT JOIN q ON q.person_id = p.person_id AND q.dt = p.dt
        LEFT JOIN t ON t.person_id = p.person_id AND t.dt = p.dt
        LEFT JOIN c ON c.person_id = p.person_id AND c.dt = p.dt
        LEFT JOIN k ON k.person_id = p.person_id AND k.dt = p.dt"""
    )
    con.execute(
        f"""COPY (SELECT *, CASE role {roles} ELSE {score_expr(default)} END AS score FROM person_base ORDER BY dt, person_id)
        TO '{out}/person_daily' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)"""
    )
    con.execute(
        f"""COPY (SELECT *, {score_expr(team)} AS score FROM (
              SELECT dt, team_id, count(*) AS people, sum(entries) AS entries, sum(complete_entries) AS complete_entries,
                     sum(valid_entries) AS valid_entries, sum(on_time_entries) AS on_time_entries,
                     sum(complete_entries) / nullif(sum(entries), 0) AS completeness_rate,
                     sum(valid_entries) / nullif(sum(entries), 0) AS validity_rate,
                     sum(on_time_entries) / nullif(sum(entries), 0) AS timeliness_rate
              FROM person_base WHERE entries > 0 GROUP BY ALL) ORDER BY dt, team_id)
        TO '{out}/team_daily' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)"""
    )
    con.execute(
        f"""COPY (SELECT r.dt, r.person_id, b.role, b.team_id, r.rule, count(*) AS entries FROM (
              SELECT dt, entered_by AS person_id, 'missing.' || unnest(dq_missing_fields) AS rule FROM entries
              UNION ALL SELECT dt, entered_by, unnest(dq_failed_checks) FROM entries
              UNION ALL SELECT dt, entered_by, 'late' FROM entries WHERE NOT dq_on_time) r
            JOIN person_base b ON b.person_id = r.person_id AND b.dt = r.dt
            GROUP BY ALL ORDER BY r.dt, r.person_id, r.rule)
        TO '{out}/rule_daily' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)"""
    )
    n = con.execute(f"SELECT count(*) FROM read_parquet('{out}/person_daily/*/*.parquet')").fetchone()[0]
    print(json.dumps({"person_daily_rows": n}))


def counts(out):
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT record_type, COUNT(*), SUM(dq_complete::INT), SUM(dq_valid::INT), SUM(dq_on_time::INT)
        FROM read_parquet('{out}/records/*/*/*.parquet', hive_partitioning = true)
        GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    print(json.dumps({r[0]: {"rows": r[1], "complete": r[2], "valid": r[3], "on_time": r[4]} for r in rows}))


def score_counts(out):
    con = duckdb.connect()
    for t in ("person_daily", "team_daily"):
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{out}/{t}/*/*.parquet', hive_partitioning = true)")
    from bench import SCORE_COUNTS  # noqa: E402 (one query text for both)
    r = con.execute(SCORE_COUNTS).fetchone()
    print(json.dumps({"person_days": r[0], "entries": int(r[1] or 0), "team_days": r[2]}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ingest":
        ingest(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "score":
        score(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "counts":
        counts(sys.argv[2])
    elif cmd == "score-counts":
        score_counts(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
