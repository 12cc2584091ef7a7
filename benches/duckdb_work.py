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


def review_daily(con, cfg):
    """The review's record-level KPIs (`crates/score/src/review.rs`) per (person, date):
    each record once, in its latest version of the day (no absences and no holidays in
    the benchmark's pipeline: working days are Monday to Friday)."""
    # A missing version is version 1 (contract section 1).
    con.execute("""CREATE TEMP VIEW rentries AS SELECT record_type, record_id,
        coalesce(TRY_CAST(version AS BIGINT), 1) AS version, owner_id, entered_by, customer_id, stage, amount,
        event_time, responded_at, response_complete, dt FROM entries""")
    stages = cfg["opportunity_stages"]
    rank = lambda c: "CASE " + c + " " + " ".join(f"WHEN '{st}' THEN {i}" for i, st in enumerate(stages)) + " END"  # noqa: E731
    within = cfg["orders_within_days"]
    roster_at = """JOIN roster r ON r.person_id = p.person_id
          AND (r.valid_from IS NULL OR CAST(r.valid_from AS DATE) <= CAST(p.dt AS DATE))
          AND (r.valid_to IS NULL OR CAST(p.dt AS DATE) <= CAST(r.valid_to AS DATE))
        QUALIFY row_number() OVER (PARTITION BY p.person_id, p.dt ORDER BY r.valid_from DESC NULLS LAST) = 1"""
    first_day = lambda t, cols: f"""SELECT v.record_id, v.dt, {", ".join(f"arg_max(v.{c}, v.version) AS {c}" for c in cols)}
        FROM rentries v JOIN (SELECT record_id, min(dt) AS dt FROM rentries WHERE record_type = '{t}' GROUP BY record_id) f
          ON f.record_id = v.record_id AND f.dt = v.dt
        WHERE v.record_type = '{t}' GROUP BY v.record_id, v.dt"""  # noqa: E731
    con.execute(f"""CREATE TEMP TABLE customer_kpis AS
        WITH c AS (SELECT owner_id, entered_by, dt FROM rentries WHERE record_type = 'customer'),
        e AS (SELECT p.person_id, p.dt, r.role, r.assists FROM (SELECT DISTINCT entered_by AS person_id, dt FROM c
              WHERE entered_by IS DISTINCT FROM owner_id) p {roster_at})
        SELECT c.owner_id AS person_id, c.dt, count(*) AS customer_entries,
          sum(CASE WHEN c.entered_by = c.owner_id THEN 1
                   WHEN e.role = 'sales_assistant' AND list_contains(string_split(e.assists, ';'), c.owner_id) THEN 1
                   ELSE 0 END) AS own_side_entries
        FROM c LEFT JOIN e ON e.person_id = c.entered_by AND e.dt = c.dt GROUP BY ALL""")
    con.execute("""CREATE TEMP TABLE new_customer_kpis AS SELECT owner AS person_id, first_dt AS dt, count(*) AS new_customers
        FROM (SELECT record_id, arg_min(owner_id, version) AS owner, arg_min(dt, version) AS first_dt
              FROM rentries WHERE record_type = 'customer' GROUP BY record_id) GROUP BY ALL""")
    con.execute(f"""CREATE TEMP TABLE opportunity_changes AS
        WITH d AS (SELECT record_id, dt, arg_max(owner_id, version) AS owner_id, arg_max(customer_id, version) AS customer_id,
                     arg_max(lower(trim(stage)), version) AS stage, max(version) AS version
                   FROM rentries WHERE record_type = 'opportunity' GROUP BY record_id, dt),
        m AS (SELECT *, lag(stage) OVER (PARTITION BY record_id ORDER BY dt) AS prev FROM (
                SELECT *, max(version) OVER (PARTITION BY record_id ORDER BY dt
                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before FROM d)
              WHERE before IS NULL OR version > before)
        SELECT record_id, dt, owner_id, customer_id,
          CASE WHEN stage = 'lost' AND prev IS DISTINCT FROM 'lost' THEN 1 ELSE 0 END AS lost,
          CASE WHEN ({rank("stage")}) > coalesce(({rank("prev")}), 0)
               AND (prev IS NULL OR ({rank("prev")}) IS NOT NULL) THEN 1 ELSE 0 END AS advanced,
          CASE WHEN stage = 'won' AND prev IS DISTINCT FROM 'won' THEN 1 ELSE 0 END AS won
        FROM m""")
    con.execute(f"CREATE TEMP TABLE order_firsts AS {first_day('order', ['owner_id', 'customer_id', 'amount'])}")
    con.execute(f"""CREATE TEMP TABLE opportunity_kpis AS
        SELECT c.owner_id AS person_id, c.dt, sum(c.advanced) AS opportunities_advanced, sum(c.lost) AS opportunities_lost,
          sum(c.won) AS opportunities_won,
          sum(CASE WHEN c.won = 1 AND o.record_id IS NULL THEN 1 ELSE 0 END) AS won_without_order
        FROM opportunity_changes c
        LEFT JOIN (SELECT DISTINCT w.record_id FROM opportunity_changes w JOIN order_firsts f
            ON f.customer_id = w.customer_id AND CAST(f.dt AS DATE) BETWEEN CAST(w.dt AS DATE) AND CAST(w.dt AS DATE) + {within}
            WHERE w.won = 1) o ON o.record_id = c.record_id
        GROUP BY ALL""")
    con.execute(f"""CREATE TEMP TABLE checkin_kpis AS
        SELECT owner_id AS person_id, dt, count(*) AS checkins,
          count(responded_at) AS checkins_answered,
          sum(CASE WHEN responded_at IS NOT NULL AND TRY_CAST(response_complete AS BOOLEAN) THEN 1 ELSE 0 END) AS checkins_complete,
          median(epoch(TRY_CAST(responded_at AS TIMESTAMPTZ)) - epoch(TRY_CAST(event_time AS TIMESTAMPTZ))) / 60.0 AS checkin_response_minutes
        FROM ({first_day('checkin', ['owner_id', 'event_time', 'responded_at', 'response_complete'])}) GROUP BY ALL""")
    con.execute(f"""CREATE TEMP TABLE coverage_kpis AS
        WITH a AS (SELECT p.person_id, p.dt, r.role, r.assists FROM (
              SELECT r.person_id, w.dt FROM (SELECT DISTINCT person_id FROM roster WHERE role = 'sales_assistant' AND assists IS NOT NULL) r
              CROSS JOIN (SELECT DISTINCT dt FROM rentries WHERE dayofweek(CAST(dt AS DATE)) NOT IN (0, 6)) w) p {roster_at}),
        u AS (SELECT person_id, dt, trim(unnest(string_split(assists, ';'))) AS rep FROM a
              WHERE role = 'sales_assistant' AND assists IS NOT NULL),
        k AS (SELECT DISTINCT entered_by, owner_id, dt FROM rentries WHERE record_type = 'checkin')
        SELECT u.person_id, u.dt, count(*) AS coverage_pairs, count(k.owner_id) AS covered_pairs
        FROM u LEFT JOIN k ON k.entered_by = u.person_id AND k.owner_id = u.rep AND k.dt = u.dt GROUP BY ALL""")
    con.execute("""CREATE TEMP TABLE review_daily AS
        SELECT k.person_id, k.dt, coalesce(nc.new_customers, 0) AS new_customers,
          coalesce(cu.customer_entries, 0) AS customer_entries, coalesce(cu.own_side_entries, 0) AS own_side_entries,
          coalesce(op.opportunities_advanced, 0) AS opportunities_advanced, coalesce(op.opportunities_lost, 0) AS opportunities_lost,
          coalesce(op.opportunities_won, 0) AS opportunities_won, coalesce(op.won_without_order, 0) AS won_without_order,
          coalesce(od.orders, 0) AS orders, od.order_amount,
          coalesce(ci.checkins, 0) AS checkins_counted, coalesce(ci.checkins_answered, 0) AS checkins_answered,
          coalesce(ci.checkins_complete, 0) AS checkins_complete, ci.checkin_response_minutes,
          coalesce(cv.coverage_pairs, 0) AS coverage_pairs, coalesce(cv.covered_pairs, 0) AS covered_pairs
        FROM (SELECT person_id, dt FROM new_customer_kpis UNION SELECT person_id, dt FROM customer_kpis
              UNION SELECT person_id, dt FROM opportunity_kpis WHERE opportunities_advanced + opportunities_lost + opportunities_won > 0
              UNION SELECT owner_id, dt FROM order_firsts UNION SELECT person_id, dt FROM checkin_kpis
              UNION SELECT person_id, dt FROM coverage_kpis) k
        LEFT JOIN new_customer_kpis nc ON nc.person_id = k.person_id AND nc.dt = k.dt
        LEFT JOIN customer_kpis cu ON cu.person_id = k.person_id AND cu.dt = k.dt
        LEFT JOIN opportunity_kpis op ON op.person_id = k.person_id AND op.dt = k.dt
        LEFT JOIN (SELECT owner_id, dt, count(*) AS orders, sum(TRY_CAST(amount AS DOUBLE)) AS order_amount
                   FROM order_firsts GROUP BY ALL) od ON od.owner_id = k.person_id AND od.dt = k.dt
        LEFT JOIN checkin_kpis ci ON ci.person_id = k.person_id AND ci.dt = k.dt
        LEFT JOIN coverage_kpis cv ON cv.person_id = k.person_id AND cv.dt = k.dt
        WHERE k.person_id IS NOT NULL""")


# (column, numerator, denominator) of every rate, as `crates/score/src/sql.rs` RATES.
RATES = [
    ("completeness_rate", "complete_entries", "entries"),
    ("validity_rate", "valid_entries", "entries"),
    ("timeliness_rate", "on_time_entries", "entries"),
    ("checkin_response_rate", "checkins_answered", "checkins_counted"),
    ("checkin_response_quality", "checkins_complete", "checkins_answered"),
    ("checkin_coverage", "covered_pairs", "coverage_pairs"),
    ("mean_satisfaction", "satisfaction_sum", "rated_tickets"),
    ("satisfaction_rate", "(satisfaction_sum - rated_tickets) / 4.0", "rated_tickets"),
    ("complaint_rate", "complaints", "complaints_known"),
    ("complaint_free_rate", "complaints_known - complaints", "complaints_known"),
    ("win_rate", "opportunities_won", "opportunities_closed"),
    ("stage_success_rate", "opportunities_advanced", "opportunities_advanced + opportunities_lost"),
    ("own_entry_rate", "own_side_entries", "customer_entries"),
]
PERIOD_COUNTS = ["entries", "complete_entries", "valid_entries", "on_time_entries", "late_seconds", "tickets",
                 "rated_tickets", "satisfaction_sum", "complaints_known", "complaints", "opportunities_closed",
                 "new_customers", "customer_entries", "own_side_entries", "opportunities_advanced",
                 "opportunities_lost", "opportunities_won", "won_without_order", "orders", "checkins_counted",
                 "checkins_answered", "checkins_complete", "coverage_pairs", "covered_pairs"]


def periods(con, out, card, cfg):
    """person_period and team_period (`crates/score/src/period.rs`): ISO weeks, months and
    quarters; sums, ratios of sums, the role's score, judged, rank among the judged of the
    team, the previous period's score, targets met."""
    rate = lambda: ", ".join(f"({n}) / nullif({d}, 0) AS {c}" for c, n, d in RATES)  # noqa: E731
    den = {c: d for c, _, d in RATES}

    def score_expr(c):
        num = " + ".join(f"coalesce({w} * {m}, 0.0)" for m, w in c.items())
        wts = " + ".join(f"CASE WHEN {m} IS NULL THEN 0.0 ELSE {w} END" for m, w in c.items())
        return f"100.0 * ({num}) / nullif({wts}, 0.0)"

    def judged(c):
        parts = [f"entries >= {cfg['min_volume']}"]
        parts += [f"(({den[m]}) = 0 OR ({den[m]}) >= {cfg['min_volume']})" for m in c if m in den]
        return " AND ".join(parts)

    def met(targets):
        if not targets:
            return "0"
        conds = []
        for m, t in targets.items():
            c = [f"{m} >= {t['min']}"] if "min" in t else []
            c += [f"{m} <= {t['max']}"] if "max" in t else []
            conds.append(f"CASE WHEN {' AND '.join(c)} THEN 1 ELSE 0 END")
        return " + ".join(conds)

    default = card.get("default", {"completeness_rate": 1, "validity_rate": 1, "timeliness_rate": 1})
    roles = sorted(r for r in set(card) | set(cfg["targets"]) if r not in ("default", "team"))
    per_role = lambda f: "CASE role " + " ".join(f"WHEN '{r}' THEN {f(r)}" for r in roles) + f" ELSE {f('default')} END"  # noqa: E731
    cards = lambda r: card.get(r, default)  # noqa: E731
    targets = cfg["targets"]
    con.execute("""CREATE TEMP TABLE periods AS
        SELECT dt, period_kind, period, period_start, prev_start FROM (SELECT DISTINCT dt, CAST(dt AS DATE) AS d FROM person_base),
        LATERAL (VALUES
          ('week', strftime(d, '%G-W%V'), CAST(date_trunc('week', d) AS DATE), CAST(date_trunc('week', d) AS DATE) - 7),
          ('month', strftime(d, '%Y-%m'), CAST(date_trunc('month', d) AS DATE), CAST(date_trunc('month', d) - INTERVAL 1 MONTH AS DATE)),
          ('quarter', year(d) || '-Q' || quarter(d), CAST(date_trunc('quarter', d) AS DATE),
             CAST(date_trunc('quarter', d) - INTERVAL 3 MONTH AS DATE))) k(period_kind, period, period_start, prev_start)""")
    sums = ", ".join(f"sum({c}) AS {c}" for c in PERIOD_COUNTS)
    con.execute(f"""COPY (
        WITH g AS (SELECT k.period_kind, k.period, k.period_start, k.prev_start, b.person_id, b.role,
                     arg_max(b.team_id, b.dt) AS team_id, count(*) AS days, {sums}, sum(order_amount) AS order_amount
                   FROM person_base b JOIN periods k ON k.dt = b.dt GROUP BY ALL),
        r AS (SELECT *, {rate()} FROM g),
        s AS (SELECT *, {per_role(lambda x: score_expr(cards(x)))} AS score,
                coalesce({per_role(lambda x: judged(cards(x)))}, false) AS judged,
                {per_role(lambda x: met(targets.get(x)))} AS targets_met FROM r),
        l AS (SELECT *, CASE WHEN lag(period_start) OVER w = prev_start THEN lag(score) OVER w END AS prev_score
              FROM s WINDOW w AS (PARTITION BY period_kind, person_id, role ORDER BY period_start))
        SELECT CAST(period_start AS VARCHAR) AS dt, * EXCLUDE (prev_start), score - prev_score AS score_change,
          CASE WHEN judged THEN rank() OVER (PARTITION BY period_kind, period, team_id, role, judged ORDER BY score DESC NULLS LAST) END AS rank_in_team
        FROM l ORDER BY period_start, period_kind, person_id, role)
        TO '{out}/person_period' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)""")
    team = card.get("team", default)
    con.execute(f"""COPY (
        WITH g AS (SELECT k.period_kind, k.period, k.period_start, k.prev_start, b.team_id, count(DISTINCT b.dt) AS days,
                     count(DISTINCT CASE WHEN b.entries > 0 THEN b.person_id END) AS people, {sums},
                     sum(order_amount) AS order_amount
                   FROM person_base b JOIN periods k ON k.dt = b.dt GROUP BY ALL),
        r AS (SELECT *, {rate()} FROM g),
        s AS (SELECT *, {score_expr(team)} AS score, coalesce({judged(team)}, false) AS judged,
                {met(targets.get("team"))} AS targets_met FROM r)
        SELECT CAST(period_start AS VARCHAR) AS dt, * EXCLUDE (prev_start),
          CASE WHEN lag(period_start) OVER w = prev_start THEN lag(score) OVER w END AS prev_score
        FROM s WINDOW w AS (PARTITION BY period_kind, team_id ORDER BY period_start) ORDER BY period_start, period_kind, team_id)
        TO '{out}/team_period' (FORMAT parquet, PARTITION_BY (dt), OVERWRITE_OR_IGNORE true)""")


def score(out, roster, weights, review=None):
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
    review_daily(con, review)
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
                 avg(TRY_CAST(complaint AS BOOLEAN)::INT) AS complaint_rate,
                 count(CASE WHEN TRY_CAST(satisfaction AS INT) BETWEEN 1 AND 5 THEN 1 END) AS rated_tickets,
                 sum(CASE WHEN TRY_CAST(satisfaction AS INT) BETWEEN 1 AND 5 THEN TRY_CAST(satisfaction AS INT) END) AS satisfaction_sum,
                 count(TRY_CAST(complaint AS BOOLEAN)) AS complaints_known,
                 sum(TRY_CAST(complaint AS BOOLEAN)::INT) AS complaints
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
            UNION SELECT person_id, dt FROM c UNION SELECT person_id, dt FROM k WHERE opportunities_closed > 0
            UNION SELECT person_id, dt FROM review_daily)
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
               coalesce(k.opportunities_closed, 0) AS opportunities_closed, k.win_rate,
               coalesce(t.rated_tickets, 0) AS rated_tickets, coalesce(t.satisfaction_sum, 0) AS satisfaction_sum,
               coalesce(t.complaints_known, 0) AS complaints_known, coalesce(t.complaints, 0) AS complaints,
               v.* EXCLUDE (person_id, dt)
        FROM p
        LEFT JOIN roster_at r ON r.person_id = p.person_id AND r.dt = p.dt
        LEFT JOIN offroster_team o ON o.person_id = p.person_id AND o.dt = p.dt
        LEFT JOIN q ON q.person_id = p.person_id AND q.dt = p.dt
        LEFT JOIN t ON t.person_id = p.person_id AND t.dt = p.dt
        LEFT JOIN c ON c.person_id = p.person_id AND c.dt = p.dt
        LEFT JOIN k ON k.person_id = p.person_id AND k.dt = p.dt
        LEFT JOIN review_daily v ON v.person_id = p.person_id AND v.dt = p.dt"""
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
    periods(con, out, card, review)
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
    for t in ("person_daily", "team_daily", "person_period"):
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{out}/{t}/*/*.parquet', hive_partitioning = true)")
    from bench import SCORE_COUNTS  # noqa: E402 (one query text for both)
    cur = con.execute(SCORE_COUNTS)
    names = [d[0] for d in cur.description]
    print(json.dumps({n: int(v or 0) for n, v in zip(names, cur.fetchone())}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "ingest":
        ingest(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "score":
        score(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
    elif cmd == "counts":
        counts(sys.argv[2])
    elif cmd == "score-counts":
        score_counts(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
