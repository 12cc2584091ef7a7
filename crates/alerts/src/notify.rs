//! Delivering alert events: a generic JSON webhook (HMAC-SHA256 signed), Prometheus
//! Alertmanager (`POST /api/v2/alerts`), a Slack incoming webhook, a WeCom (企业微信)
//! group robot and a DingTalk robot (signed URL). Each delivery has a timeout, retries
//! with exponential backoff on network errors, 429 and 5xx, and one clear log line when
//! it finally fails.

use std::time::Duration;

use base64::Engine as _;
use crmdq_config::{Receiver, ReceiverKind};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::AlertEvent;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` on webhook deliveries.
pub const SIGNATURE_HEADER: &str = "X-Crmdq-Signature";

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The signature header value of a webhook body.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// DingTalk's signed URL: `timestamp` (ms) and `sign` = base64(HMAC-SHA256(secret,
/// "{timestamp}\n{secret}")), URL-encoded.
pub fn dingtalk_url(url: &str, secret: &str, timestamp_ms: i64) -> Result<String, String> {
    let mut u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let to_sign = format!("{timestamp_ms}\n{secret}");
    let sign = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()));
    u.query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign);
    Ok(u.to_string())
}

/// The JSON an event is sent as to a generic webhook (and `--webhook`).
pub fn event_json(e: &AlertEvent) -> Value {
    json!({
        "event_id": e.event_id,
        "episode": e.episode,
        "repeat": e.repeat,
        "status": e.state,
        "rule": e.rule,
        "scope": e.scope,
        "subject": e.subject,
        "severity": e.severity,
        "business_date": e.dt,
        "metric": e.metric,
        "value": e.value,
        "baseline": e.baseline,
        "threshold": e.threshold,
        "entries": e.entries,
        "team_id": e.team_id,
        "manager_id": e.manager_id,
        "top_rules": e.top_rules,
        "example_records": e.example_records,
        "message": e.message,
        "evaluated_at": e.evaluated_at,
    })
}

/// Alertmanager identifies an alert by its label set, and a resolve must carry the
/// labels of what it resolves: so the labels name the episode (`alert_id` = rule/subject/
/// episode, the same for its firing, repeats and resolve), and the per-event `event_id`
/// and the business date are annotations. Alertmanager de-duplicates repeated posts of
/// one label set itself.
fn alertmanager_body(e: &AlertEvent, now: &str) -> Value {
    let mut labels = json!({
        "alertname": e.rule,
        "alert_id": format!("{}/{}/{}", e.rule, e.subject, e.episode),
        "severity": e.severity,
        "scope": e.scope,
        "subject": e.subject,
        "metric": e.metric,
        "source": "crmdq",
    });
    if let Some(t) = &e.team_id {
        labels["team_id"] = json!(t);
    }
    if let Some(m) = &e.manager_id {
        labels["manager_id"] = json!(m);
    }
    let mut alert = json!({
        "labels": labels,
        "annotations": {
            "summary": e.message.lines().next().unwrap_or_default(),
            "description": e.message,
            "top_rules": e.top_rules.clone().unwrap_or_default(),
            "example_records": e.example_records.join(", "),
            "event_id": e.event_id,
            "business_date": e.dt,
        },
        "startsAt": e.evaluated_at,
    });
    if e.state == "resolved" {
        alert["endsAt"] = json!(now);
    }
    json!([alert])
}

/// One HTTP POST: url, body, headers.
pub type Post = (String, Vec<u8>, Vec<(String, String)>);

/// The request for one event to one receiver.
pub fn request(r: &Receiver, e: &AlertEvent, now_ms: i64) -> Result<Post, String> {
    let now = jiff::Timestamp::from_millisecond(now_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let title = format!("crmdq {} {}", e.state, e.rule);
    match r.kind {
        ReceiverKind::Webhook => {
            let body = serde_json::to_vec(&event_json(e)).expect("json");
            let mut headers = vec![("Content-Type".into(), "application/json".into())];
            if let Some(secret) = &r.secret {
                headers.push((SIGNATURE_HEADER.into(), webhook_signature(secret, &body)));
            }
            Ok((r.url.clone(), body, headers))
        }
        ReceiverKind::Alertmanager => {
            let url = format!("{}/api/v2/alerts", r.url.trim_end_matches('/'));
            let body = serde_json::to_vec(&alertmanager_body(e, &now)).expect("json");
            Ok((
                url,
                body,
                vec![("Content-Type".into(), "application/json".into())],
            ))
        }
        ReceiverKind::Slack => {
            let body = serde_json::to_vec(&json!({ "text": e.message })).expect("json");
            Ok((
                r.url.clone(),
                body,
                vec![("Content-Type".into(), "application/json".into())],
            ))
        }
        ReceiverKind::Wecom => {
            let body = serde_json::to_vec(&json!({
                "msgtype": "markdown",
                "markdown": { "content": format!("**{title}**\n{}", e.message) },
            }))
            .expect("json");
            Ok((
                r.url.clone(),
                body,
                vec![("Content-Type".into(), "application/json".into())],
            ))
        }
        ReceiverKind::Dingtalk => {
            let url = match &r.secret {
                Some(secret) => dingtalk_url(&r.url, secret, now_ms)?,
                None => r.url.clone(),
            };
            let body = serde_json::to_vec(&json!({
                "msgtype": "markdown",
                "markdown": { "title": title, "text": format!("### {title}\n{}", e.message) },
            }))
            .expect("json");
            Ok((
                url,
                body,
                vec![("Content-Type".into(), "application/json".into())],
            ))
        }
    }
}

/// Deliver `e` to `r`, retrying; Err is the final failure, already logged.
pub async fn deliver(client: &reqwest::Client, r: &Receiver, e: &AlertEvent) -> Result<(), String> {
    if r.url.is_empty() {
        return Err(format!("receiver `{}` has no url (disabled)", r.name));
    }
    let mut last = String::new();
    let attempts = r.retries + 1;
    for attempt in 0..attempts {
        if attempt > 0 {
            let backoff = Duration::from_millis(200 * (1 << (attempt - 1).min(6)));
            tokio::time::sleep(backoff).await;
        }
        // Rebuilt per attempt: DingTalk's signature is timestamped.
        let (url, body, headers) = request(r, e, jiff::Timestamp::now().as_millisecond())?;
        let mut req = client.post(&url).timeout(r.timeout).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(receiver = %r.name, rule = %e.rule, subject = %e.subject, state = %e.state, "alert delivered");
                return Ok(());
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                last = format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                );
                if !(status.is_server_error() || status.as_u16() == 429) {
                    break;
                }
            }
            Err(err) => last = err.to_string(),
        }
        tracing::debug!(receiver = %r.name, attempt = attempt + 1, error = %last, "alert delivery attempt failed");
    }
    tracing::error!(
        receiver = %r.name,
        rule = %e.rule,
        subject = %e.subject,
        error = %last,
        "alert delivery failed after {attempts} attempt(s)"
    );
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_signature_matches_the_documented_scheme() {
        // From DingTalk's documentation of the signing scheme: HmacSHA256 over
        // "timestamp\nsecret" keyed by the secret, base64, then URL-encoded.
        let url = dingtalk_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            "SECxyz",
            1_700_000_000_000,
        )
        .unwrap();
        let sign = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(b"SECxyz", b"1700000000000\nSECxyz"));
        let u = reqwest::Url::parse(&url).unwrap();
        let q: std::collections::BTreeMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["access_token"], "abc");
        assert_eq!(q["timestamp"], "1700000000000");
        assert_eq!(q["sign"], sign);
        assert!(url.contains("sign=") && !url[url.find("sign=").unwrap()..].contains('+'));
    }

    #[test]
    fn webhook_signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let sig = webhook_signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
