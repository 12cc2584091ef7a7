//! The synthetic CRM stream: several teams over several days with recognisable people —
//! a diligent rep, a rep who types everything in days later, a sloppy assistant entering
//! for two reps, a service team with a complaint spike, someone not on the roster — plus
//! duplicate deliveries, edits and a few undecodable messages. Deterministic per seed.
//!
//! For the performance review (contract section 7) it also has: deals that move through
//! the stages over days, some lost, the won ones mostly followed by an order within days
//! and some never; a colleague who enters customers for another rep (not the rep's own
//! side); answered, unanswered and poor check-ins; and a rep on leave ([`absences_csv`]).
//! These come from a second random stream, so the records above are the same as before
//! they existed.

use std::fmt::Write as _;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub start: Date,
    pub days: u32,
    /// People on the roster (at least the 10 named ones).
    pub people: u32,
    pub seed: u64,
    pub tz: TimeZone,
    /// Record ids count up from `first_id + 1` (`act-000001`, …): files generated to be
    /// ingested together need disjoint ranges, or their records are versions of each other.
    pub first_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Habit {
    Diligent,
    Late,
    Normal,
    Sloppy,
}

#[derive(Debug, Clone)]
struct Person {
    id: String,
    name: String,
    role: &'static str,
    team: &'static str,
    manager: &'static str,
    habit: Habit,
    /// For assistants: the reps they enter for.
    enters_for: Vec<String>,
    /// For reps: whether an assistant enters their data.
    has_assistant: bool,
    /// For reps: probability of answering the assistant's daily check-in.
    responds: f64,
}

fn person(id: &str, name: &str, role: &'static str, team: &'static str, habit: Habit) -> Person {
    let manager = match team {
        "east" => "mgr.east",
        "north" => "mgr.north",
        _ => "mgr.care",
    };
    Person {
        id: id.into(),
        name: name.into(),
        role,
        team,
        manager,
        habit,
        enters_for: Vec::new(),
        has_assistant: false,
        responds: 0.9,
    }
}

fn people(n: u32) -> Vec<Person> {
    let mut v = vec![
        person("li.wei", "Li Wei", "sales_rep", "east", Habit::Diligent),
        person("zhang.min", "Zhang Min", "sales_rep", "east", Habit::Late),
        Person {
            has_assistant: true,
            responds: 0.95,
            ..person(
                "wang.fang",
                "Wang Fang",
                "sales_rep",
                "north",
                Habit::Normal,
            )
        },
        Person {
            has_assistant: true,
            responds: 0.3,
            ..person("zhao.lei", "Zhao Lei", "sales_rep", "north", Habit::Normal)
        },
        Person {
            enters_for: vec!["wang.fang".into(), "zhao.lei".into()],
            ..person(
                "chen.jing",
                "Chen Jing",
                "sales_assistant",
                "north",
                Habit::Sloppy,
            )
        },
        person("sun.li", "Sun Li", "service_agent", "care", Habit::Normal),
        person(
            "zhou.qiang",
            "Zhou Qiang",
            "service_agent",
            "care",
            Habit::Diligent,
        ),
        person("mgr.east", "Liu Yang", "manager", "east", Habit::Normal),
        person("mgr.north", "Huang Jie", "manager", "north", Habit::Normal),
        person("mgr.care", "Wu Xia", "manager", "care", Habit::Normal),
    ];
    for i in 0..n.saturating_sub(10) {
        let p = match i % 3 {
            0 => person(
                &format!("rep.{i:02}"),
                &format!("Rep {i}"),
                "sales_rep",
                "east",
                Habit::Normal,
            ),
            1 => person(
                &format!("rep.{i:02}"),
                &format!("Rep {i}"),
                "sales_rep",
                "north",
                Habit::Normal,
            ),
            _ => person(
                &format!("agent.{i:02}"),
                &format!("Agent {i}"),
                "service_agent",
                "care",
                Habit::Normal,
            ),
        };
        v.push(p);
    }
    v
}

/// The roster CSV of the generated people (valid from the start date, open-ended; an
/// assistant's `assists` lists the reps they enter for).
/// `line` (a generated record) with its event and entry times moved by `days`: the same
/// record version delivered with another business date (a re-send, or an entry typed late).
pub fn shifted(line: &str, days: i64) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    for field in ["event_time", "entered_at"] {
        if let Some(t) = v[field].as_str().and_then(|t| t.parse::<Timestamp>().ok()) {
            v[field] = json!((t + jiff::SignedDuration::from_hours(24 * days)).to_string());
        }
    }
    v.to_string()
}

pub fn roster_csv(spec: &GenSpec) -> String {
    let mut s =
        String::from("person_id,name,role,team_id,manager_id,valid_from,valid_to,assists\n");
    for p in people(spec.people) {
        let mgr = if p.role == "manager" { "" } else { p.manager };
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},,{}",
            p.id,
            p.name,
            p.role,
            p.team,
            mgr,
            spec.start,
            p.enters_for.join(";")
        );
    }
    s
}

/// The rep on leave: zhao.lei, three days from the eighth day on (periods of 12 days or
/// more). Their assistant still reaches out on those days; those check-ins do not count.
pub fn absences_csv(spec: &GenSpec) -> String {
    let mut s = String::from("person_id,from,to,kind\n");
    if spec.days >= 12 {
        let from = spec.start + Span::new().days(7);
        let to = from + Span::new().days(2);
        let _ = writeln!(s, "zhao.lei,{from},{to},leave");
    }
    s
}

struct Gen {
    rng: ChaCha8Rng,
    tz: TimeZone,
    out: Vec<String>,
    seq: u64,
    first_id: u64,
}

const OCCUPATIONS: [&str; 8] = [
    "teacher",
    "engineer",
    "doctor",
    "nurse",
    "accountant",
    "driver",
    "designer",
    "manager",
];
const CITIES: [&str; 5] = ["Beijing", "Shanghai", "Shenzhen", "Chengdu", "Hangzhou"];
const MOBILE: [&str; 8] = ["138", "139", "150", "151", "186", "188", "135", "137"];

impl Gen {
    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:06}", self.seq)
    }

    fn ts(&self, t: Timestamp) -> String {
        t.to_zoned(self.tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    fn event_time(&mut self, day: Date) -> Timestamp {
        let secs = self.rng.random_range(9 * 3600..19 * 3600);
        let dt = day.to_datetime(jiff::civil::Time::midnight()) + Span::new().seconds(secs);
        self.tz.to_timestamp(dt).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn delay(&mut self, habit: Habit) -> Span {
        let minutes = match habit {
            Habit::Diligent => self.rng.random_range(5..240),
            Habit::Late => self.rng.random_range(3 * 1440..6 * 1440),
            Habit::Normal => {
                if self.rng.random_bool(0.12) {
                    self.rng.random_range(1440..2 * 1440)
                } else {
                    self.rng.random_range(20..900)
                }
            }
            Habit::Sloppy => self.rng.random_range(60..2200),
        };
        Span::new().minutes(minutes)
    }

    fn quality(habit: Habit) -> (f64, f64) {
        match habit {
            Habit::Diligent => (0.01, 0.01),
            Habit::Late | Habit::Normal => (0.05, 0.03),
            Habit::Sloppy => (0.35, 0.15),
        }
    }

    fn phone(&mut self, miss: f64, bad: f64) -> Value {
        let r: f64 = self.rng.random();
        if r < miss {
            let choices = [
                json!("13800138000"),
                json!("11111111111"),
                json!(""),
                Value::Null,
                json!("unknown"),
            ];
            return choices[self.rng.random_range(0..choices.len())].clone();
        }
        if r < miss + bad {
            return json!(format!("138{}", self.rng.random_range(1000..9999)));
        }
        let prefix = MOBILE[self.rng.random_range(0..MOBILE.len())];
        let rest = self.rng.random_range(10_000_000..99_999_999u32);
        if self.rng.random_bool(0.2) {
            json!(format!("+86 {prefix}-{}-{}", rest / 10_000, rest % 10_000))
        } else {
            json!(format!("{prefix}{rest}"))
        }
    }

    fn pick(&mut self, items: &[Value]) -> Value {
        items[self.rng.random_range(0..items.len())].clone()
    }

    fn field(
        &mut self,
        miss: f64,
        bad: f64,
        good: Value,
        invalid: Value,
        placeholder: Value,
    ) -> Value {
        let r: f64 = self.rng.random();
        if r < miss {
            placeholder
        } else if r < miss + bad {
            invalid
        } else {
            good
        }
    }

    fn id_number(&mut self, age: i64, event: Timestamp) -> String {
        let year = i64::from(event.to_zoned(self.tz.clone()).year()) - age - 1;
        let body = format!(
            "110105{year:04}{:02}{:02}{:03}",
            self.rng.random_range(1..13),
            self.rng.random_range(1..29),
            self.rng.random_range(100..999)
        );
        let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = body
            .bytes()
            .zip(w)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        format!("{body}{}", b"10X98765432"[(sum % 11) as usize] as char)
    }

    fn emit(&mut self, mut rec: serde_json::Map<String, Value>) {
        rec.retain(|_, v| !v.is_null());
        let line = Value::Object(rec).to_string();
        // A few deliveries happen twice (same record, same version).
        if self.rng.random_bool(0.01) {
            self.out.push(line.clone());
        }
        self.out.push(line);
    }

    fn base(
        &mut self,
        rt: &str,
        id: &str,
        owner: &str,
        entered_by: &str,
        ev: Timestamp,
        habit: Habit,
    ) -> serde_json::Map<String, Value> {
        let entered = ev + self.delay(habit);
        self.header(rt, id, owner, entered_by, ev, entered)
    }

    /// The fields every record has.
    fn header(
        &self,
        rt: &str,
        id: &str,
        owner: &str,
        entered_by: &str,
        ev: Timestamp,
        entered: Timestamp,
    ) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("record_type".into(), json!(rt));
        m.insert("record_id".into(), json!(id));
        m.insert("owner_id".into(), json!(owner));
        m.insert("entered_by".into(), json!(entered_by));
        m.insert("event_time".into(), json!(self.ts(ev)));
        m.insert("entered_at".into(), json!(self.ts(entered)));
        m
    }
}

/// Generate the stream as NDJSON lines (without newlines).
pub fn generate(spec: &GenSpec) -> Vec<String> {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(spec.seed),
        tz: spec.tz.clone(),
        out: Vec::new(),
        seq: spec.first_id,
        first_id: spec.first_id,
    };
    let all = people(spec.people);
    let mut extra = Extra {
        rng: ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5EED_2E71_E700_0001),
        seq: spec.first_id,
        deals: Vec::new(),
    };
    for d in 0..spec.days {
        let day = spec.start + Span::new().days(i64::from(d));
        let spike = spec.days >= 4 && d == spec.days - 3;
        for p in &all {
            match p.role {
                "sales_rep" if !p.has_assistant => sales_day(&mut g, p, &p.id, p.habit, day),
                "sales_assistant" => {
                    for rep in &p.enters_for {
                        sales_day(&mut g, p, rep, p.habit, day);
                        let rep_p = all
                            .iter()
                            .find(|x| &x.id == rep)
                            .expect("assistant's rep exists");
                        checkin(&mut g, p, rep_p, day);
                    }
                }
                "service_agent" => service_day(&mut g, p, day, spike && p.id == "sun.li"),
                _ => {}
            }
        }
        let end = spec.start + Span::new().days(i64::from(spec.days) - 1);
        review_day(&mut g, &mut extra, &all, day, end);
        // Someone not on the roster helps out on weekdays, on the east team's customers.
        if d % 2 == 0 {
            let ev = g.event_time(day);
            let id = g.id("act");
            let mut r = g.base("activity", &id, "li.wei", "temp.xu", ev, Habit::Normal);
            r.insert("team_id".into(), json!("east"));
            r.insert("customer_id".into(), json!("cus-temp"));
            r.insert("kind".into(), json!("call"));
            r.insert("outcome".into(), json!("n/a"));
            g.emit(r);
        }
        // A few undecodable messages.
        if d % 3 == 1 {
            g.out
                .push("{\"record_type\": \"activity\", \"record_id\": ".to_string());
            g.out.push(format!("{{\"record_type\":\"customer\",\"entered_by\":\"chen.jing\",\"event_time\":\"{day} 10:00:00\",\"entered_at\":\"{day} 11:00:00\"}}"));
        }
    }
    g.out
}

/// The review's records: their own random stream and id counter (`deal-`, `dord-`, `xcus-`).
struct Extra {
    rng: ChaCha8Rng,
    seq: u64,
    deals: Vec<Deal>,
}

/// An open deal: who owns it, who enters it, for which customer, at which stage.
struct Deal {
    id: String,
    owner: String,
    entered_by: String,
    customer: String,
    stage: usize,
    version: u32,
}

const STAGES: [&str; 5] = ["lead", "qualified", "proposal", "negotiation", "won"];

impl Extra {
    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{:06}", self.seq)
    }

    /// A record entered within a few hours of its event (these people are on time).
    fn record(
        &mut self,
        g: &Gen,
        rt: &str,
        id: &str,
        owner: &str,
        entered_by: &str,
        day: Date,
    ) -> serde_json::Map<String, Value> {
        let secs = self.rng.random_range(9 * 3600..17 * 3600);
        let dt = day.to_datetime(jiff::civil::Time::midnight()) + Span::new().seconds(secs);
        let ev = g.tz.to_timestamp(dt).unwrap_or(Timestamp::UNIX_EPOCH);
        let entered = ev + Span::new().minutes(self.rng.random_range(10..300));
        g.header(rt, id, owner, entered_by, ev, entered)
    }

    fn customer(&mut self, g: &Gen) -> String {
        let hi = g.seq.max(g.first_id + 2);
        format!("cus-{:06}", self.rng.random_range(g.first_id + 1..hi))
    }
}

/// One day of the review's records: new deals, stage moves (a few lost), orders after
/// most wins (those that would fall after `end` never come), a colleague's customer entries
/// for li.wei. On the last day nothing new is opened.
fn review_day(g: &mut Gen, x: &mut Extra, all: &[Person], day: Date, end: Date) {
    let last = day >= end;
    let emit = |g: &mut Gen, r: serde_json::Map<String, Value>| {
        g.out.push(Value::Object(r).to_string());
    };
    // Stage moves of the open deals, then new deals.
    let mut open = Vec::new();
    for mut deal in std::mem::take(&mut x.deals) {
        let roll: f64 = x.rng.random();
        let moved = if roll < 0.08 {
            Some("lost")
        } else if roll < 0.45 {
            deal.stage += 1;
            Some(STAGES[deal.stage])
        } else {
            None
        };
        let Some(stage) = moved else {
            open.push(deal);
            continue;
        };
        deal.version += 1;
        let mut r = x.record(
            g,
            "opportunity",
            &deal.id,
            &deal.owner,
            &deal.entered_by,
            day,
        );
        r.insert("version".into(), json!(deal.version));
        r.insert("customer_id".into(), json!(deal.customer));
        r.insert("stage".into(), json!(stage));
        r.insert("amount".into(), json!(x.rng.random_range(5_000..300_000)));
        r.insert("currency".into(), json!("CNY"));
        emit(g, r);
        match stage {
            "won" => {
                // Most wins are followed by their order within days; some never are.
                let after = x.rng.random_range(0..6i64);
                if x.rng.random_bool(0.75) && day + Span::new().days(after) <= end {
                    let oid = x.id("dord");
                    let mut o = x.record(
                        g,
                        "order",
                        &oid,
                        &deal.owner,
                        &deal.entered_by,
                        day + Span::new().days(after),
                    );
                    o.insert("customer_id".into(), json!(deal.customer));
                    o.insert("opportunity_id".into(), json!(deal.id));
                    o.insert("amount".into(), json!(x.rng.random_range(5_000..300_000)));
                    o.insert("currency".into(), json!("CNY"));
                    emit(g, o);
                }
            }
            "lost" => {}
            _ => open.push(deal),
        }
    }
    x.deals = open;
    if !last {
        for p in all.iter().filter(|p| p.role == "sales_rep") {
            if !x.rng.random_bool(0.35) {
                continue;
            }
            let entered_by = all
                .iter()
                .find(|a| a.enters_for.contains(&p.id))
                .map_or_else(|| p.id.clone(), |a| a.id.clone());
            let deal = Deal {
                id: x.id("deal"),
                owner: p.id.clone(),
                entered_by,
                customer: x.customer(g),
                stage: 0,
                version: 1,
            };
            let mut r = x.record(
                g,
                "opportunity",
                &deal.id,
                &deal.owner,
                &deal.entered_by,
                day,
            );
            r.insert("customer_id".into(), json!(deal.customer));
            r.insert("stage".into(), json!("lead"));
            r.insert("amount".into(), json!(x.rng.random_range(5_000..300_000)));
            r.insert("currency".into(), json!("CNY"));
            emit(g, r);
            x.deals.push(deal);
        }
    }
    // A colleague enters a customer for li.wei now and then: not li.wei's own side.
    if x.rng.random_bool(0.3) {
        let id = x.id("xcus");
        let mut r = x.record(g, "customer", &id, "li.wei", "zhang.min", day);
        r.insert("name".into(), json!(format!("Customer {id}")));
        r.insert(
            "phone".into(),
            json!(format!(
                "139{:08}",
                x.rng.random_range(10_000_000..99_999_999u32)
            )),
        );
        r.insert(
            "occupation".into(),
            json!(OCCUPATIONS[x.rng.random_range(0..OCCUPATIONS.len())]),
        );
        r.insert("age".into(), json!(x.rng.random_range(22..65)));
        emit(g, r);
    }
}

fn sales_day(g: &mut Gen, who: &Person, owner: &str, habit: Habit, day: Date) {
    let (miss, bad) = Gen::quality(habit);
    for _ in 0..2 {
        let ev = g.event_time(day);
        let id = g.id("cus");
        let mut r = g.base("customer", &id, owner, &who.id, ev, habit);
        let age = g.rng.random_range(22..65i64);
        r.insert("name".into(), json!(format!("Customer {id}")));
        let phone = g.phone(miss, bad);
        r.insert("phone".into(), phone);
        let occ = json!(OCCUPATIONS[g.rng.random_range(0..OCCUPATIONS.len())]);
        let ph = g.pick(&[json!("未知"), json!(""), json!("unknown"), json!("test")]);
        let v = g.field(miss, bad * 0.2, occ, json!("?"), ph);
        r.insert("occupation".into(), v);
        let bad_age = g.pick(&[json!(150), json!("abc"), json!(12)]);
        let ph = g.pick(&[json!(0), Value::Null, json!("unknown")]);
        let v = g.field(miss, bad, json!(age), bad_age, ph);
        r.insert("age".into(), v);
        r.insert(
            "gender".into(),
            json!(if g.rng.random_bool(0.5) { "M" } else { "F" }),
        );
        r.insert(
            "city".into(),
            json!(CITIES[g.rng.random_range(0..CITIES.len())]),
        );
        if g.rng.random_bool(0.3) {
            let id_no = g.id_number(age, ev);
            r.insert("id_number".into(), json!(id_no));
        }
        if g.rng.random_bool(0.05) {
            r.insert("wechat_id".into(), json!(format!("wx_{id}")));
        }
        g.emit(r.clone());
        // Some customers are edited later the same day (version 2, fields fixed).
        if g.rng.random_bool(0.1) {
            r.insert("version".into(), json!(2));
            r.insert("occupation".into(), json!("engineer"));
            g.emit(r);
        }
    }
    for _ in 0..4 {
        let ev = g.event_time(day);
        let id = g.id("act");
        let mut r = g.base("activity", &id, owner, &who.id, ev, habit);
        r.insert(
            "customer_id".into(),
            json!(format!(
                "cus-{:06}",
                g.rng
                    .random_range(g.first_id + 1..g.seq.max(g.first_id + 2))
            )),
        );
        let good = g.pick(&[
            json!("visit"),
            json!("call"),
            json!("message"),
            json!("meeting"),
        ]);
        let kind = g.field(miss, bad, good, json!("lunch"), json!(""));
        r.insert("kind".into(), kind);
        let good = g.pick(&[
            json!("interested"),
            json!("follow up"),
            json!("not now"),
            json!("signed"),
        ]);
        let outcome = g.field(miss, 0.0, good, json!(""), json!("无"));
        r.insert("outcome".into(), outcome);
        g.emit(r);
    }
    let ev = g.event_time(day);
    let id = g.id("opp");
    let mut r = g.base("opportunity", &id, owner, &who.id, ev, habit);
    let stages = [
        "lead",
        "qualified",
        "proposal",
        "negotiation",
        "won",
        "lost",
    ];
    let stage = stages[g.rng.random_range(0..stages.len())];
    r.insert(
        "customer_id".into(),
        json!(format!(
            "cus-{:06}",
            g.rng
                .random_range(g.first_id + 1..g.seq.max(g.first_id + 2))
        )),
    );
    r.insert(
        "stage".into(),
        g.field(
            miss,
            bad * 0.3,
            json!(stage),
            json!("maybe"),
            json!("unknown"),
        ),
    );
    let amount = json!(g.rng.random_range(1000..200_000));
    let amount = g.field(miss, bad * 0.3, amount, json!(-5), json!(null));
    r.insert("amount".into(), amount);
    r.insert("currency".into(), json!("CNY"));
    g.emit(r);
    if stage == "won" {
        let ev = ev + Span::new().minutes(30);
        let oid = g.id("ord");
        let mut o = g.base("order", &oid, owner, &who.id, ev, habit);
        o.insert("customer_id".into(), json!("cus-000001"));
        o.insert("opportunity_id".into(), json!(id));
        o.insert(
            "amount".into(),
            json!(format!("{}.00", g.rng.random_range(1000..200_000))),
        );
        o.insert("currency".into(), json!("CNY"));
        g.emit(o);
    }
}

fn checkin(g: &mut Gen, assistant: &Person, rep: &Person, day: Date) {
    let ev = g.event_time(day);
    let id = g.id("chk");
    let mut r = g.base("checkin", &id, &rep.id, &assistant.id, ev, Habit::Diligent);
    r.insert(
        "channel".into(),
        json!(["call", "sms", "wechat"][g.rng.random_range(0..3)]),
    );
    if g.rng.random_bool(rep.responds) {
        let resp = ev + Span::new().minutes(g.rng.random_range(5..180));
        r.insert("responded_at".into(), json!(g.ts(resp)));
        r.insert("response_complete".into(), json!(g.rng.random_bool(0.9)));
    } else {
        r.insert("response_complete".into(), json!(false));
    }
    g.emit(r);
}

fn service_day(g: &mut Gen, agent: &Person, day: Date, spike: bool) {
    let (miss, bad) = Gen::quality(agent.habit);
    for _ in 0..6 {
        let ev = g.event_time(day);
        let id = g.id("tkt");
        let mut r = g.base("service_ticket", &id, &agent.id, &agent.id, ev, agent.habit);
        r.insert(
            "customer_id".into(),
            json!(format!(
                "cus-{:06}",
                g.rng
                    .random_range(g.first_id + 1..g.seq.max(g.first_id + 2))
            )),
        );
        r.insert(
            "channel".into(),
            json!(["phone", "wechat", "email"][g.rng.random_range(0..3)]),
        );
        let good = g.pick(&[
            json!("billing"),
            json!("delivery"),
            json!("quality"),
            json!("account"),
        ]);
        let category = g.field(miss, 0.0, good, json!(""), json!("unknown"));
        r.insert("category".into(), category);
        let (sat, complaint) = if spike {
            (g.rng.random_range(1..3), g.rng.random_bool(0.6))
        } else {
            (g.rng.random_range(3..6), g.rng.random_bool(0.05))
        };
        r.insert(
            "satisfaction".into(),
            g.field(miss, bad, json!(sat), json!(7), json!(null)),
        );
        r.insert("complaint".into(), json!(complaint));
        let closed = ev + Span::new().minutes(g.rng.random_range(10..600));
        r.insert("closed_at".into(), json!(g.ts(closed)));
        g.emit(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_seed() {
        let spec = GenSpec {
            start: jiff::civil::date(2026, 11, 1),
            days: 3,
            people: 12,
            seed: 7,
            tz: TimeZone::get("Asia/Shanghai").unwrap(),
            first_id: 0,
        };
        let a = generate(&spec);
        assert_eq!(a, generate(&spec));
        assert_ne!(
            a,
            generate(&GenSpec {
                seed: 8,
                ..spec.clone()
            })
        );
        assert!(a.len() > 100);
        assert!(roster_csv(&spec).lines().count() == 13);
        // Another id range: the same records under ids no line of `a` uses.
        let b = generate(&GenSpec {
            first_id: 5_000_000,
            ..spec.clone()
        });
        assert_eq!(a.len(), b.len());
        let ids = |lines: &[String]| -> std::collections::BTreeSet<String> {
            lines
                .iter()
                .filter_map(|l| {
                    let v: Value = serde_json::from_str(l).ok()?;
                    Some(v.get("record_id")?.as_str()?.to_string())
                })
                .collect()
        };
        let (ia, ib) = (ids(&a), ids(&b));
        assert!(ia.len() > 100 && ib.len() > 100);
        assert!(ia.is_disjoint(&ib));
        assert!(ib.iter().all(|i| i.ends_with(|c: char| c.is_ascii_digit())));
    }
}
