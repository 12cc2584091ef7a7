#!/usr/bin/env python3
"""crmdq's performance table, next to DuckDB doing the same work, in one command:

    python3 benches/bench.py                 # 1M and 10M generated entries (about 25 minutes)
    python3 benches/bench.py --records 1000000 --kafka-records 200000
    python3 benches/bench.py --tiny          # a few thousand entries: the harness itself (tests)

For each size: `crmdq generate` data (NDJSON, ~300-400 B per entry), then
  - `crmdq ingest` (NDJSON -> checked Parquet) and DuckDB's equivalent (duckdb_work.py),
    each measured with /usr/bin/time (wall seconds, peak RSS, CPU %);
  - `crmdq score` and DuckDB's aggregation over its own output;
  - the per-type counts (rows, complete, valid, on time) of both outputs, which must agree
    (the comparison is of equal work);
and once: the kernels (`crmdq bench`: decode, check families, Parquet encode; one core) and
Kafka end to end — on librdkafka's in-process mock cluster (`crmdq bench --kafka`) and on
the tansu broker when it is installed (`.ci/run` builds it), each next to a bare librdkafka
consumer draining the same topic from the same broker.

Prints a Markdown table; `--json FILE` writes every measurement.
"""

import argparse
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOW = "2027-01-01T00:00:00Z"
PER_PERSON_DAY = 6.95  # entries `crmdq generate` writes per person and day


def timed(cmd, **kw):
    """Run `cmd` under /usr/bin/time: (seconds, peak RSS MiB, CPU %, stdout)."""
    fmt = "%e %M %P"
    t = subprocess.run(
        ["/usr/bin/time", "-f", fmt, *map(str, cmd)],
        capture_output=True, text=True, **kw,
    )
    if t.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{t.stdout}\n{t.stderr}")
    last = t.stderr.strip().splitlines()[-1].split()
    return float(last[0]), int(last[1]) / 1024, float(last[2].rstrip("%") or 0), t.stdout


def generate(crmdq, work, n):
    """About `n` entries: one `generate` per million (different seeds, date ranges and
    record-id ranges: a record id seen in two parts would be two deliveries of one record)."""
    out = work / f"gen-{n}.ndjson"
    roster = work / f"gen-{n}.roster.csv"
    if out.exists() and roster.exists():
        return out, roster
    parts = max(1, math.ceil(n / 1_000_000))
    per = n / parts
    days = 200 if n >= 100_000 else 20
    people = max(10, round(per / (days * PER_PERSON_DAY)))
    with open(out, "wb") as f:
        for k in range(parts):
            part = work / f"part-{k}.ndjson"
            start = f"{2000 + k}-01-01"
            subprocess.run([crmdq, "generate", "--out", part, "--days", str(days), "--people", str(people),
                            "--seed", str(k + 1), "--start", start, "--first-id", str(k * 100_000_000)],
                           check=True, capture_output=True)
            with open(part, "rb") as p:
                shutil.copyfileobj(p, f)
            if k == 0:
                shutil.copy(str(part) + ".roster.csv", roster)
            part.unlink()
            Path(str(part) + ".roster.csv").unlink()
            Path(str(part) + ".absences.csv").unlink(missing_ok=True)
    return out, roster


def phone_heavy(crmdq, work, n, seed=7):
    """About `n` entries shaped as a new user tried crmdq (issue 23): mostly customers
    (55%) and service tickets (45%), and about a third of the customers' phones malformed
    (too short or long, a letter for a digit, another country, a `tel:` prefix, a mobile
    prefix that does not exist), the valid ones written as people type them (spaces,
    hyphens, `+86`). Owners from the generator's roster; 200 business dates from 2001-01-01
    (disjoint from `generate`'s ranges); a tenth of the entries typed the day after."""
    import random

    out = work / f"phones-{n}.ndjson"
    _, roster = generate(crmdq, work, n)
    if out.exists():
        return out, roster
    rows = [l.split(",") for l in open(roster).read().splitlines()[1:]]
    reps = [r[0] for r in rows if r[2] in ("sales_rep", "sales_assistant")]
    agents = [r[0] for r in rows if r[2] == "service_agent"]
    rnd = random.Random(seed)
    occupations = ["teacher", "engineer", "designer", "doctor", "nurse", "driver", "", "unknown"]
    cities = ["Beijing", "Shanghai", "Shenzhen", "Chengdu", "Hangzhou", "Wuhan"]

    def mobile():
        # Prefixes every plan allocates (libphonenumber rejects e.g. 140-144, 154, 160-164).
        return f"{rnd.choice(['13', '15', '18'])}{rnd.choice('012356789')}{rnd.randrange(10**8):08d}"

    def valid_phone():
        m = mobile()
        k = rnd.randrange(4)
        return m if k == 0 else f"{m[:3]} {m[3:7]} {m[7:]}" if k == 1 else f"{m[:3]}-{m[3:7]}-{m[7:]}" if k == 2 else f"+86 {m}"

    def malformed_phone():
        m = mobile()
        k = rnd.randrange(7)
        if k == 0:
            return m[:10]                          # a digit short
        if k == 1:
            return m + str(rnd.randrange(10))      # a digit too many
        if k == 2:
            i = rnd.randrange(3, 11)
            return m[:i] + "O" + m[i + 1:]         # a letter for a digit
        if k == 3:
            return f"+1 415 555 {rnd.randrange(10**4):04d}"
        if k == 4:
            return "tel:" + m
        if k == 5:
            return "12" + m[2:]                     # no such mobile prefix
        return f"{m[:3]} {m[3:6]}"                  # half a number

    customers = []
    with open(out, "w") as f:
        for i in range(n):
            day = 11323 + rnd.randrange(200)  # 2001-01-01 + up to 199 days (as days since 1970)
            ev = day * 86400 - 8 * 3600 + rnd.randrange(9 * 3600, 18 * 3600)
            et = ev + (rnd.randrange(86400, 2 * 86400) if rnd.random() < 0.1 else rnd.randrange(60, 6 * 3600))
            fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + 8 * 3600))  # noqa: E731
            if rnd.random() < 0.55 or not customers:
                rid = f"cus-ph-{i:09d}"
                customers.append(rid)
                if len(customers) > 10000:
                    customers.pop(rnd.randrange(len(customers)))
                who = rnd.choice(reps)
                rec = {"record_type": "customer", "record_id": rid, "owner_id": who, "entered_by": who,
                       "event_time": fmt(ev), "entered_at": fmt(et), "name": f"Customer {i}",
                       "phone": malformed_phone() if rnd.random() < 1 / 3 else valid_phone(),
                       "occupation": rnd.choice(occupations), "age": rnd.randrange(18, 80),
                       "gender": rnd.choice("MF"), "city": rnd.choice(cities)}
            else:
                who = rnd.choice(agents)
                rec = {"record_type": "service_ticket", "record_id": f"tkt-ph-{i:09d}", "owner_id": who,
                       "entered_by": who, "event_time": fmt(ev), "entered_at": fmt(et),
                       "customer_id": rnd.choice(customers), "channel": rnd.choice(["phone", "email", "chat"]),
                       "category": rnd.choice(["billing", "account", "delivery"]),
                       "satisfaction": rnd.randrange(1, 6), "complaint": rnd.random() < 0.1,
                       "closed_at": fmt(et + rnd.randrange(600, 7200))}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return out, roster


def crmdq_counts(crmdq, wh):
    q = " UNION ALL ".join(
        f"SELECT '{t}' AS record_type, COUNT(*) AS n, SUM(CAST(dq_complete AS INT)) AS c, "
        f"SUM(CAST(dq_valid AS INT)) AS v, SUM(CAST(dq_on_time AS INT)) AS o FROM \"{t}\""
        for t in ["activity", "checkin", "customer", "opportunity", "order", "service_ticket"]
    )
    out = subprocess.run([crmdq, "sql", "--warehouse", wh, "--format", "json", q],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        r = json.loads(line)
        if r["n"]:
            res[r["record_type"]] = {"rows": r["n"], "complete": r["c"], "valid": r["v"], "on_time": r["o"]}
    return res


def review_config(pipeline):
    """The pipeline's review settings as JSON (DuckDB's periods use the same), with the
    shipped defaults where the file leaves them out."""
    import yaml

    y = yaml.safe_load(Path(pipeline).read_text())
    return json.dumps({
        "opportunity_stages": y.get("opportunity_stages", ["lead", "qualified", "proposal", "negotiation", "won"]),
        "orders_within_days": y.get("orders_within_days", 7),
        "min_volume": (y.get("review") or {}).get("min_volume", 20),
        "targets": (y.get("review") or {}).get("targets", {}),
    })


def scorecards(pipeline):
    """The pipeline's scorecards as JSON (DuckDB's scoring uses the same weights)."""
    import yaml

    return json.dumps(yaml.safe_load(Path(pipeline).read_text()).get("scorecards") or {})


SCORE_COUNTS = (
    "SELECT (SELECT COUNT(*) FROM person_daily) AS person_days, "
    "(SELECT SUM(entries) FROM person_daily) AS entries, "
    "(SELECT COUNT(*) FROM team_daily) AS team_days, "
    "(SELECT COUNT(*) FROM person_period) AS person_periods, "
    "(SELECT SUM(new_customers) FROM person_period WHERE period_kind = 'month') AS new_customers, "
    "(SELECT SUM(own_side_entries) FROM person_period WHERE period_kind = 'month') AS own_side_entries, "
    "(SELECT SUM(opportunities_advanced) FROM person_period WHERE period_kind = 'quarter') AS advanced, "
    "(SELECT SUM(won_without_order) FROM person_period WHERE period_kind = 'week') AS won_without_order, "
    "(SELECT SUM(covered_pairs) FROM person_period WHERE period_kind = 'month') AS covered_pairs, "
    "(SELECT COUNT(*) FROM person_period WHERE judged) AS judged"
)


def crmdq_score_counts(crmdq, wh):
    out = subprocess.run([crmdq, "sql", "--warehouse", wh, "--format", "json", SCORE_COUNTS],
                         check=True, capture_output=True, text=True).stdout
    return {k: int(v or 0) for k, v in json.loads(out.splitlines()[0]).items()}


def set_aside(path):
    """Move an old output out of the way; `empty_trash` deletes it when the harness ends.
    On ext4 without a journal (this VM's root) creating files within a minute or so of
    deleting thousands is slow (the kernel skips recently deleted inodes one by one), so
    nothing is deleted right before something is timed."""
    path = Path(path)
    if path.exists():
        trash = path.parent / "trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{path.name}-{time.time_ns()}")


def empty_trash(work):
    shutil.rmtree(Path(work) / "trash", ignore_errors=True)


def size_run(crmdq, work, n, pipeline, score_reps=3, shape="generated"):
    """One size of one shape: `generated` (`crmdq generate`'s mix: ingest, score, counts)
    or `phones` (the phone-heavy stream of `phone_heavy`: ingest and counts only; its
    scores are not a review anyone would read)."""
    data, roster = (generate if shape == "generated" else phone_heavy)(crmdq, work, n)
    entries = sum(1 for _ in open(data, "rb"))
    mb = data.stat().st_size / 1e6
    wh = work / f"wh-{shape}-{n}"
    dd = work / f"duck-{shape}-{n}"
    for d in (wh, dd):
        set_aside(d)
    dd.mkdir()
    r = {"shape": shape, "entries": entries, "input_mb": round(mb, 1)}
    s, rss, cpu, _ = timed([crmdq, "--now", NOW, "ingest", "--pipeline", pipeline, "--roster", roster,
                            "--warehouse", wh, data])
    r["crmdq_ingest"] = {"seconds": s, "rss_mib": round(rss), "cpu_pct": cpu}
    s, rss, cpu, _ = timed([sys.executable, HERE / "duckdb_work.py", "ingest", data, dd, NOW])
    r["duckdb_ingest"] = {"seconds": s, "rss_mib": round(rss), "cpu_pct": cpu}
    if shape != "generated":
        mine = crmdq_counts(crmdq, wh)
        theirs = json.loads(subprocess.run([sys.executable, HERE / "duckdb_work.py", "counts", dd],
                                           check=True, capture_output=True, text=True).stdout)
        r["counts"] = {"crmdq": mine, "duckdb": theirs, "agree": mine == theirs}
        return r
    # Scoring: the same work as DuckDB's script (no alert evaluation: timed apart below),
    # `score_reps` turns each, taking turns (medians reported; the first score after an
    # ingest also waits on that ingest's writeback). `--full`: every turn scores all of it,
    # as DuckDB's script does (a score after nothing new is incremental and computes nothing).
    mine, theirs = [], []
    for _ in range(score_reps):
        mine.append(timed([crmdq, "--now", NOW, "score", "--pipeline", pipeline, "--roster", roster,
                           "--warehouse", wh, "--no-alerts", "--full"]))
        for t in ("person_daily", "team_daily", "rule_daily", "person_period", "team_period"):
            set_aside(dd / t)
        theirs.append(timed([sys.executable, HERE / "duckdb_work.py", "score", dd, roster, scorecards(pipeline),
                             review_config(pipeline)]))
    for key, runs in (("crmdq_score", mine), ("duckdb_score", theirs)):
        s, rss, cpu, _ = sorted(runs, key=lambda x: x[0])[len(runs) // 2]
        r[key] = {"seconds": s, "rss_mib": round(max(x[1] for x in runs)), "cpu_pct": cpu,
                  "runs": [x[0] for x in runs]}
    # A re-score that also evaluates the alert rules over every date (the first score of a
    # backfill): the product's whole `score`, for its time and memory.
    s, rss, cpu, _ = timed([crmdq, "--now", NOW, "score", "--pipeline", pipeline, "--roster", roster,
                            "--warehouse", wh, "--full"])
    r["crmdq_score_alerts"] = {"seconds": s, "rss_mib": round(rss), "cpu_pct": cpu}
    mine = crmdq_counts(crmdq, wh)
    theirs = json.loads(subprocess.run([sys.executable, HERE / "duckdb_work.py", "counts", dd],
                                       check=True, capture_output=True, text=True).stdout)
    r["counts"] = {"crmdq": mine, "duckdb": theirs, "agree": mine == theirs}
    mine = crmdq_score_counts(crmdq, wh)
    theirs = json.loads(subprocess.run([sys.executable, HERE / "duckdb_work.py", "score-counts", dd],
                                       check=True, capture_output=True, text=True).stdout)
    r["score_counts"] = {"crmdq": mine, "duckdb": theirs, "agree": mine == theirs}
    return r


def kernels(crmdq, work, pipeline, n, kafka):
    data, _ = generate(crmdq, work, n)
    cmd = [crmdq, "--now", NOW, "bench", "--pipeline", pipeline, "--input", data]
    if kafka:
        # The Kafka warehouse is kept until the harness ends (see set_aside).
        mock = work / "mock"
        set_aside(mock)
        mock.mkdir()
        cmd += ["--kafka", "--dir", str(mock)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    return [json.loads(l) for l in out.splitlines()]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def tansu_bin():
    for p in [os.environ.get("CRMDQ_TANSU"), str(Path.home() / ".cache/tansu/bin/tansu"), shutil.which("tansu")]:
        if p and Path(p).exists():
            return p
    return None


def proc_cpu_seconds(pid):
    """User + system CPU seconds of a live process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def per_broker_cpu_ratio(runs):
    """Median over turns of crmdq's rate ÷ bare's, each drain's time first divided by the
    broker's CPU seconds during it: the same ratio with the broker's own turn-to-turn
    variance taken out (None without /proc)."""
    ratios = []
    for r in runs:
        b, c = r.get("broker_cpu_seconds_bare"), r.get("broker_cpu_seconds_crmdq")
        if not b or not c:
            return None
        ratios.append((r["bare_seconds"] / b) / (r["crmdq_seconds"] / c))
    return statistics.median(ratios) if ratios else None


def kafka_tansu(crmdq, work, pipeline, n, reps=3):
    """Produce n generated entries to tansu, then drain them `reps` times each, taking turns:
    with a bare librdkafka consumer (`bare_consumer.py`, confluent_kafka) and with
    `crmdq run --until-caught-up`."""
    tansu = tansu_bin()
    try:
        from confluent_kafka import Producer
    except ImportError:
        return {"skipped": "confluent_kafka not installed"}
    if not tansu:
        return {"skipped": "tansu not installed (.ci/run builds it)"}
    data, roster = generate(crmdq, work, n)
    bdir = work / "tansu"
    shutil.rmtree(bdir, ignore_errors=True)
    bdir.mkdir()
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "sqlite://broker.db"], cwd=bdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run([tansu, "topic", "create", "--broker", url, "--partitions", "3", "crm.records"], check=True)
        addr = f"127.0.0.1:{port}"
        p = Producer({"bootstrap.servers": addr, "linger.ms": 20, "queue.buffering.max.messages": 1000000})
        t = time.time()
        produced = 0
        with open(data, "rb") as f:
            for i, line in enumerate(f):
                produced += 1
                while True:
                    try:
                        p.produce("crm.records", line.rstrip(b"\n"), key=str(i))
                        break
                    except BufferError:
                        p.poll(0.05)
        p.flush(600)
        produce_s = time.time() - t
        # The broker's speed varies from run to run (and it shares the two cores with the
        # consumer), so the bare consumer and crmdq take turns, each in a group of its own
        # and timed the same way (process start to exit); the medians are reported.
        runs = []
        pipe = work / "tansu-pipeline.yaml"
        for rep in range(reps):
            def bare():
                return timed([sys.executable, HERE / "bare_consumer.py", addr, "crm.records",
                              str(produced), f"bench-bare-{rep}"])

            def ours():
                wh = work / f"wh-tansu-{rep}"
                set_aside(wh)
                pipe.write_text(f"name: bench\nroster: {roster}\nsource:\n  kafka:\n    group_id: bench-crmdq-{rep}\n"
                                "    topics:\n      crm.records: ~\n")
                return timed([crmdq, "--now", NOW, "run", "--pipeline", pipe, "--warehouse", wh,
                              "--brokers", addr, "--until-caught-up"])

            # The broker's CPU seconds while each drained: tansu is CPU-bound, and its cost
            # for the same drain varies from turn to turn (sqlite) by more than the gap.
            def with_broker_cpu(f):
                c0 = proc_cpu_seconds(broker.pid)
                r = f()
                c1 = proc_cpu_seconds(broker.pid)
                return r, (c1 - c0 if c0 is not None and c1 is not None else None)

            # Who goes first alternates, so that a broker warming up (or slowing down)
            # within a turn favours neither.
            if rep % 2 == 0:
                (bare_s, _, bare_cpu, _), bare_broker = with_broker_cpu(bare)
                (s, rss, cpu, out), ours_broker = with_broker_cpu(ours)
            else:
                (s, rss, cpu, out), ours_broker = with_broker_cpu(ours)
                (bare_s, _, bare_cpu, _), bare_broker = with_broker_cpu(bare)
            busy = re.search(r"busy (\d+)%", out)
            runs.append({"bare_seconds": bare_s, "bare_cpu_pct": bare_cpu, "crmdq_seconds": s,
                         "crmdq_rss_mib": round(rss), "crmdq_cpu_pct": cpu, "crmdq_summary": out.strip(),
                         "crmdq_busy_pct": int(busy.group(1)) if busy else None,
                         "first": "bare" if rep % 2 == 0 else "crmdq",
                         "broker_cpu_seconds_bare": bare_broker, "broker_cpu_seconds_crmdq": ours_broker})
        # Set aside only now (deleted when the harness ends): removing each turn's warehouse
        # before the next made each turn of crmdq slower than the one before (see set_aside).
        for rep in range(reps):
            set_aside(work / f"wh-tansu-{rep}")
        med = lambda k: statistics.median(r[k] for r in runs)
        return {"messages": produced, "produce_seconds": round(produce_s, 1), "runs": runs,
                "bare_seconds": med("bare_seconds"), "crmdq_seconds": med("crmdq_seconds"),
                "crmdq_rss_mib": med("crmdq_rss_mib"), "crmdq_cpu_pct": med("crmdq_cpu_pct"),
                "crmdq_busy_pct": [r["crmdq_busy_pct"] for r in runs],
                "ratio_median": statistics.median(r["bare_seconds"] / r["crmdq_seconds"] for r in runs),
                "ratio_per_broker_cpu_median": per_broker_cpu_ratio(runs)}
    finally:
        broker.kill()
        broker.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--kernel-records", type=int, default=200_000)
    ap.add_argument("--kafka-records", type=int, default=200_000, help="messages for the tansu line (0: skip)")
    ap.add_argument("--kafka-reps", type=int, default=6, help="turns of bare consumer and crmdq on tansu, who goes first alternating (medians reported)")
    ap.add_argument("--mock-records", type=int, default=200_000, help="messages for the mock-cluster line")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "crmdq-bench")
    ap.add_argument("--crmdq", default=None, help="crmdq binary (default: the release build)")
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines/crm.yaml"))
    ap.add_argument("--score-reps", type=int, default=3, help="turns of crmdq's and DuckDB's scoring, taking turns (medians reported)")
    ap.add_argument("--shapes", nargs="+", default=["generated", "phones"], choices=["generated", "phones"],
                    help="input shapes per size: crmdq generate's mix, and the phone-heavy stream (ingest only)")
    ap.add_argument("--tiny", action="store_true", help="a few thousand entries, no tansu: the harness only")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.tiny:
        a.records, a.kernel_records, a.kafka_records, a.mock_records = [5000], 5000, 0, 5000
    crmdq = a.crmdq
    if crmdq is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/crmdq-target"))
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": str(target)})
        crmdq = str(target / "release/crmdq")
    a.work.mkdir(parents=True, exist_ok=True)

    res = {"machine": f"{os.cpu_count()} cores", "sizes": [], "kernels": [], "kafka_tansu": None}
    for n in a.records:
        for shape in a.shapes:
            print(f"… {n:,} entries ({shape})", file=sys.stderr)
            res["sizes"].append(size_run(crmdq, a.work, n, a.pipeline, 1 if a.tiny else a.score_reps, shape))
            print(json.dumps(res["sizes"][-1]), file=sys.stderr, flush=True)
    print("… kernels and Kafka (mock cluster)", file=sys.stderr)
    res["kernels"] = kernels(crmdq, a.work, a.pipeline, a.kernel_records, kafka=False)
    # Kafka on the mock cluster, on its own input (--mock-records). The mock keeps 5 MiB
    # per partition, so `crmdq bench --kafka` spreads bigger inputs over more partitions.
    res["kernels"] += [k for k in kernels(crmdq, a.work, a.pipeline, a.mock_records, kafka=True)
                       if k["name"].startswith("kafka")]
    if a.kafka_records:
        print("… Kafka (tansu)", file=sys.stderr)
        res["kafka_tansu"] = kafka_tansu(crmdq, a.work, a.pipeline, a.kafka_records, a.kafka_reps)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    print(table(res))
    empty_trash(a.work)
    if not all(s["counts"]["agree"] for s in res["sizes"]):
        sys.exit("crmdq and DuckDB disagree on the counts (see --json)")


def table(res):
    rows = ["| work | crmdq | DuckDB | DuckDB's time ÷ crmdq's |", "|---|---|---|---|"]
    for s in res["sizes"]:
        n, mb = s["entries"], s["input_mb"]
        ci, di = s["crmdq_ingest"], s["duckdb_ingest"]
        what = "entries" if s.get("shape", "generated") == "generated" else "phone-heavy entries"
        rows.append(
            f"| ingest {n:,} {what} ({mb:,.0f} MB NDJSON) → checked Parquet | {n / ci['seconds']:,.0f} rec/s, "
            f"{mb / ci['seconds']:.1f} MB/s, {ci['seconds']:.1f} s, RSS {ci['rss_mib']} MiB, CPU {ci['cpu_pct']:.0f}% | "
            f"{n / di['seconds']:,.0f} rec/s, {di['seconds']:.1f} s, RSS {di['rss_mib']} MiB, CPU {di['cpu_pct']:.0f}% | "
            f"{di['seconds'] / ci['seconds']:.2f}× |")
        if "crmdq_score" not in s:
            rows.append(f"| counts agree (rows, complete, valid, on time per type) | | | {'yes' if s['counts']['agree'] else 'NO'} |")
            continue
        cs, ds = s["crmdq_score"], s["duckdb_score"]
        rows.append(f"| score {n:,} entries (review, daily tables, periods; median of {len(cs.get('runs', [0]))}) | "
                    f"{cs['seconds']:.1f} s, RSS {cs['rss_mib']} MiB | "
                    f"{ds['seconds']:.1f} s, RSS {ds['rss_mib']} MiB | {ds['seconds'] / cs['seconds']:.2f}× |")
        ca = s.get("crmdq_score_alerts")
        if ca:
            rows.append(f"| score {n:,} entries, then the alert rules over every date | {ca['seconds']:.1f} s, "
                        f"RSS {ca['rss_mib']} MiB | | |")
        rows.append(f"| counts agree (rows, complete, valid, on time per type) | | | {'yes' if s['counts']['agree'] else 'NO'} |")
        sc = s["score_counts"]
        rows.append(f"| scores agree (person-days {sc['crmdq']['person_days']:,}, entries {sc['crmdq']['entries']:,}, "
                    f"team-days {sc['crmdq']['team_days']:,}, person-periods {sc['crmdq'].get('person_periods', 0):,}, "
                    f"review sums, judged) | | | {'yes' if sc['agree'] else 'NO'} |")
    rows += ["", "| kernel / Kafka | records | seconds | records/s |", "|---|---|---|---|"]
    for k in res["kernels"]:
        rows.append(f"| {k['name']} | {k['records']:,} | {k['seconds']:.3f} | {k['records'] / k['seconds']:,.0f} |")
    kt = res.get("kafka_tansu")
    if kt and "skipped" not in kt:
        n = kt["messages"]
        reps = len(kt["runs"])
        rows.append(f"| kafka (tansu, sqlite): bare librdkafka consumer (Python), median of {reps} (process start to exit) | {n:,} | {kt['bare_seconds']:.2f} | {n / kt['bare_seconds']:,.0f} |")
        rows.append(f"| kafka (tansu, sqlite): crmdq run --until-caught-up, median of {reps} (process start to exit), RSS {kt['crmdq_rss_mib']:.0f} MiB, CPU {kt['crmdq_cpu_pct']:.0f}% | {n:,} | {kt['crmdq_seconds']:.2f} | {n / kt['crmdq_seconds']:,.0f} |")
        turns = ", ".join(f"{r['bare_seconds'] / r['crmdq_seconds']:.2f}" for r in kt["runs"])
        rows.append(f"| kafka (tansu): crmdq's rate ÷ bare's, median of the {reps} turns ({turns}) | | | {kt['ratio_median']:.0%} |")
        if kt.get("ratio_per_broker_cpu_median") is not None:
            cpu = ", ".join(f"{r['broker_cpu_seconds_bare']:.1f}/{r['broker_cpu_seconds_crmdq']:.1f}" for r in kt["runs"])
            rows.append(f"| kafka (tansu): the same, each drain's time per second of broker CPU (broker CPU s per turn, bare/crmdq: {cpu}) | | | {kt['ratio_per_broker_cpu_median']:.0%} |")
        busy = ", ".join(f"{b}%" for b in kt.get("crmdq_busy_pct", []) if b is not None)
        if busy:
            rows.append(f"| kafka (tansu): crmdq's loop busy since its first message, per turn (the rest: waiting for the broker) | | | {busy} |")
    elif kt:
        rows.append(f"| kafka (tansu) | skipped: {kt['skipped']} | | |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
