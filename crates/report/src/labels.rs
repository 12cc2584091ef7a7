//! Every word the scorecards show, in English and Simplified Chinese: one table, written
//! by people (no machine translation in the output). A template names a label as a field
//! (`tr.score`), so a missing label is a compile error; `TABLE` lets a test walk them all.
//! Placeholders in braces (`{n}`) are filled by [`fill`].

use crmdq_config::Lang;

macro_rules! labels {
    ($($key:ident: $en:literal, $zh:literal;)*) => {
        /// The labels of one language.
        #[derive(Debug)]
        pub struct Tr {
            $(pub $key: &'static str,)*
        }

        pub const EN: Tr = Tr { $($key: $en,)* };
        pub const ZH_CN: Tr = Tr { $($key: $zh,)* };

        /// (key, English, Simplified Chinese) of every label.
        pub const TABLE: &[(&str, &str, &str)] = &[$((stringify!($key), $en, $zh),)*];

        impl Tr {
            /// A label by key: the KPI names are keyed by their column names.
            pub fn get(&self, key: &str) -> Option<&'static str> {
                match key {
                    $(stringify!($key) => Some(self.$key),)*
                    _ => None,
                }
            }
        }
    };
}

labels! {
    report_title: "Data quality review", "数据质量考评";
    periods_title: "Review periods", "考评周期列表";
    teams: "Teams", "团队";
    people: "People", "人员";
    pipeline_health: "Pipeline health", "数据管道状况";
    generated: "Generated", "生成时间";
    period_label: "Period", "考评周期";
    period_start: "First day", "开始日期";
    period_end: "Last day", "结束日期";
    targets_total: "Targets set", "目标项数";
    manager: "Manager", "经理";
    all_teams: "All teams", "全部团队";
    team: "Team", "团队";
    person: "Person", "人员";
    role: "Role", "岗位";
    name: "Name", "姓名";
    score: "Score", "得分";
    prev_score: "Previous score", "上期得分";
    score_change: "Change", "变化";
    rank_in_team: "Rank", "排名";
    targets: "Targets met", "达标项";
    target: "Target", "目标";
    target_at_least: "at least {v}", "不低于 {v}";
    target_at_most: "at most {v}", "不高于 {v}";
    met: "Target met", "已达标";
    missed: "Not yet at target", "尚未达标";
    no_target: "No target set", "未设目标";
    vs_prev: "vs. previous period", "较上期";
    no_prev: "first period", "首个周期";
    trend: "Last {n} periods", "近 {n} 期趋势";
    kpis: "Key measures", "关键指标";
    ranking: "Ranking", "排名";
    ranking_help: "People ranked within their team and role; only people with enough data are ranked.", "在团队内按岗位排名；数据量足够的人员才参与排名。";
    not_judged: "Not ranked this period", "本期未参与排名";
    not_judged_help: "Too little data to judge fairly: their numbers are shown, never ranked.", "数据量太少，无法公平评判：只展示数字，不参与排名。";
    why: "Why", "原因";
    needs_entries: "{n} entries, needs {min}", "录入 {n} 条，需 {min} 条";
    needs_cases: "{kpi}: {n} cases, needs {min}", "{kpi}：{n} 例，需 {min} 例";
    judged: "Ranked", "参与排名";
    yes: "yes", "是";
    no: "no", "否";
    team_rules: "What cost the team most", "团队失分最多的问题";
    person_rules: "What to fix first", "优先改进";
    rule: "Problem", "问题";
    entries_affected: "Entries affected", "涉及录入";
    up_to_points: "Up to points", "最多可加分";
    examples: "Example records", "示例记录";
    calendar: "Day by day", "每日情况";
    legend_good: "All complete, valid and on time", "全部完整、有效且及时";
    legend_some: "Mostly fine (80% or more)", "大部分合格（80% 及以上）";
    legend_poor: "Needs attention (below 80%)", "需要关注（低于 80%）";
    legend_none: "No entries", "无录入";
    legend_absent: "Absent", "请假/外出";
    legend_off: "Non-working day", "非工作日";
    day_entries: "{n} entries", "{n} 条录入";
    advice_title: "Where the points are", "提分建议";
    advice_first: "Start with {kpi}: it is at {value}. Bringing it to 100% would raise the score by up to {gain} points.", "建议先从{kpi}入手：目前为 {value}，提升到 100% 最多可使得分提高 {gain} 分。";
    advice_rule: "{n} entries: {rule}. Fixing them would add up to {gain} points.", "{n} 条录入：{rule}。改正后最多可加 {gain} 分。";
    advice_none: "Every measure is at 100%. Keep it up!", "各项指标均为 100%，请继续保持！";
    rule_missing: "{field} missing", "缺少{field}";
    rule_late: "entered after the deadline", "超过截止时间录入";
    rule_check: "did not pass the check {check}", "未通过检查 {check}";
    assists_title: "Reps you enter for", "代为录入的销售代表";
    rep: "Rep", "销售代表";
    entries_for: "Entries for them", "为其录入";
    checkins_about: "Check-ins about them", "相关回访";
    days_checked: "Days with a check-in", "有回访的天数";
    checkin_title: "Answering check-ins", "回访响应";
    dead_letters: "Dead letters", "无法入库的消息";
    dead_letters_help: "Messages that could not be read as records, kept with the reason.", "无法解析为记录的消息，已连同原因保留。";
    by_reason: "By reason", "按原因";
    by_day: "By day", "按日期";
    reason: "Reason", "原因";
    day: "Day", "日期";
    messages: "Messages", "条数";
    total: "Total", "合计";
    freshness: "Freshness", "数据新鲜度";
    freshness_help: "time since the newest committed event", "距最新已入库事件的时间";
    last_ingest: "Last ingest", "最近入库";
    last_ingest_help: "time since records were last committed", "距最近一次提交记录的时间";
    positions: "Committed Kafka positions", "已提交的 Kafka 位点";
    positions_help: "The next offset of each partition the warehouse holds up to; the lag is the broker's end offset minus this.", "仓库已处理到的各分区下一位点；积压量为 broker 末端位点减去此值。";
    topic: "Topic", "主题";
    partition: "Partition", "分区";
    next_offset: "Next offset", "下一位点";
    alerts_fired: "Alerts in the period", "本期告警";
    alerts_more: "and {n} more (see the alerts table)", "另有 {n} 条（见 alerts 表）";
    severity: "Severity", "级别";
    alert_rule: "Rule", "规则";
    subject: "Subject", "对象";
    state: "State", "状态";
    value: "Value", "数值";
    none: "None", "无";
    unknown_value: "unknown", "未知";
    people_count: "People", "人数";
    judged_count: "Ranked", "参与排名";
    as_of: "Warehouse version {v}", "仓库版本 {v}";
    new_person: "new", "新";
    no_team: "No team", "无团队";
    more_people: "People in this team", "本团队人员";
    // Roles.
    role_sales_rep: "Sales rep", "销售代表";
    role_sales_assistant: "Sales assistant", "销售助理";
    role_service_agent: "Service agent", "客服专员";
    role_manager: "Manager", "经理";
    role_unknown: "Not on the roster", "不在花名册中";
    // Period kinds.
    kind_week: "Week", "周";
    kind_month: "Month", "月";
    kind_quarter: "Quarter", "季度";
    // Weekdays, Monday first.
    wd_1: "Mon", "一";
    wd_2: "Tue", "二";
    wd_3: "Wed", "三";
    wd_4: "Thu", "四";
    wd_5: "Fri", "五";
    wd_6: "Sat", "六";
    wd_7: "Sun", "日";
    // The KPIs, keyed by their column names.
    completeness_rate: "Completeness", "完整率";
    validity_rate: "Validity", "有效率";
    timeliness_rate: "Timeliness", "及时率";
    checkin_response_rate: "Check-in response rate", "回访响应率";
    checkin_response_quality: "Check-in response quality", "回访响应质量";
    checkin_coverage: "Check-in coverage", "回访覆盖率";
    checkin_response_minutes: "Median response time (min)", "响应时间中位数（分钟）";
    satisfaction_rate: "Satisfaction", "满意度";
    mean_satisfaction: "Mean satisfaction (1–5)", "平均满意度（1–5 分）";
    complaint_rate: "Complaint rate", "投诉率";
    complaint_free_rate: "Complaint-free rate", "无投诉率";
    win_rate: "Win rate", "赢单率";
    stage_success_rate: "Stage success rate", "阶段推进成功率";
    own_entry_rate: "Own-entry rate", "本人录入率";
    entries: "Entries", "录入条数";
    days: "Days with entries", "有录入的天数";
    tickets: "Tickets", "工单数";
    new_customers: "New customers", "新增客户";
    orders: "Orders", "订单数";
    order_amount: "Order amount", "订单金额";
    won_without_order: "Wins without an order", "赢单未录订单";
    checkins: "Check-ins", "回访次数";
    opportunities_advanced: "Opportunities advanced", "推进的商机";
    opportunities_lost: "Opportunities lost", "丢失的商机";
    opportunities_won: "Opportunities won", "赢得的商机";
}

/// The labels of `lang`.
pub fn tr(lang: Lang) -> &'static Tr {
    match lang {
        Lang::En => &EN,
        Lang::ZhCn => &ZH_CN,
    }
}

/// `text` with each `{name}` replaced by its value.
pub fn fill(text: &str, args: &[(&str, &str)]) -> String {
    let mut s = text.to_string();
    for (k, v) in args {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

impl Tr {
    /// A KPI's name (its column name if the table has none: never a blank).
    pub fn kpi<'a>(&self, column: &'a str) -> &'a str {
        self.get(column).unwrap_or(column)
    }

    /// A role's name (the roster's own word for roles the table does not know).
    pub fn role<'a>(&self, role: &'a str) -> &'a str {
        match role {
            "sales_rep" => self.role_sales_rep,
            "sales_assistant" => self.role_sales_assistant,
            "service_agent" => self.role_service_agent,
            "manager" => self.role_manager,
            "unknown" => self.role_unknown,
            other => other,
        }
    }

    /// Monday = 1 … Sunday = 7.
    pub fn weekday(&self, n: i8) -> &'static str {
        [
            self.wd_1, self.wd_2, self.wd_3, self.wd_4, self.wd_5, self.wd_6, self.wd_7,
        ][usize::try_from(n.clamp(1, 7) - 1).unwrap_or(0)]
    }

    /// A failed rule of `rule_daily` in words (`missing.phone`, `late`, a check's name).
    pub fn rule(&self, rule: &str) -> String {
        if let Some(field) = rule.strip_prefix("missing.") {
            fill(self.rule_missing, &[("field", field)])
        } else if rule == "late" {
            self.rule_late.to_string()
        } else {
            fill(self.rule_check, &[("check", rule)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_cjk(s: &str) -> bool {
        s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    }

    /// Every label exists in both languages, the Chinese one is written in Chinese, and
    /// both carry the same placeholders.
    #[test]
    fn every_label_in_both_languages() {
        let mut keys = std::collections::BTreeSet::new();
        for (key, en, zh) in TABLE {
            assert!(keys.insert(*key), "{key} twice");
            assert!(!en.trim().is_empty(), "{key}: no English");
            assert!(!zh.trim().is_empty(), "{key}: no Chinese");
            assert!(has_cjk(zh), "{key}: `{zh}` is not Chinese");
            let holes = |s: &str| {
                let mut v: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}').map(|(k, _)| k.to_string()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(holes(en), holes(zh), "{key}: placeholders differ");
            assert_eq!(EN.get(key), Some(*en));
            assert_eq!(ZH_CN.get(key), Some(*zh));
        }
    }

    /// Every KPI a scorecard or target can name, and every count of the period tables,
    /// has a name in both languages.
    #[test]
    fn every_kpi_has_a_name() {
        let columns = crmdq_config::SCORE_METRICS
            .iter()
            .chain(crate::view::COUNT_KPIS.iter())
            .chain(crate::view::RATE_KPIS.iter());
        for c in columns {
            assert!(EN.get(c).is_some(), "{c}: no English name");
            assert!(ZH_CN.get(c).is_some(), "{c}: no Chinese name");
        }
        for role in [
            "sales_rep",
            "sales_assistant",
            "service_agent",
            "manager",
            "unknown",
        ] {
            assert_ne!(EN.role(role), role);
            assert!(has_cjk(ZH_CN.role(role)));
        }
    }

    #[test]
    fn rules_in_words() {
        assert_eq!(EN.rule("missing.phone"), "phone missing");
        assert_eq!(ZH_CN.rule("late"), "超过截止时间录入");
        assert_eq!(EN.rule("phone_valid"), "did not pass the check phone_valid");
    }
}
