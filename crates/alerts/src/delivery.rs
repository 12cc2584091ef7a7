//! Delivery is a promise: an event that its receiver did not accept (disabled, network
//! error, 5xx after retries) stays *pending* and is offered again by every later
//! evaluation — `crmdq alerts`, `crmdq score`, or the periodic one inside `crmdq run` —
//! until a receiver accepts it or it is older than `alerts.max_pending_hours` (then it is
//! logged and recorded as `expired`). Receivers de-duplicate on the event's stable id.

use crmdq_config::{Pipeline, Receiver, ReceiverKind};
use datafusion::prelude::SessionContext;

use crate::{AlertError, AlertEvent, evaluate, notify, route, store};

/// The receivers of one evaluation: each event's route, and `--webhook` if given.
#[derive(Debug)]
pub struct Deliverer<'a> {
    p: &'a Pipeline,
    client: reqwest::Client,
    extra: Option<Receiver>,
}

/// What delivering one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub delivered: bool,
    /// The receiver that took it (or the routed one that did not).
    pub receiver: Option<String>,
    pub error: Option<String>,
}

impl<'a> Deliverer<'a> {
    pub fn new(p: &'a Pipeline, extra_webhook: Option<&str>) -> Result<Self, AlertError> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| AlertError::Usage(format!("HTTP client: {e}")))?;
        let extra = extra_webhook.map(|url| Receiver {
            name: "--webhook".into(),
            kind: ReceiverKind::Webhook,
            url: url.to_string(),
            secret: None,
            timeout: std::time::Duration::from_secs(10),
            retries: 3,
        });
        Ok(Deliverer { p, client, extra })
    }

    /// Deliver `e` to its routed receiver. `--webhook` gets a copy of every event it is
    /// given, and stands in for a route that has no enabled receiver.
    /// Whether any receiver could take `e` now (an enabled route, or `--webhook`).
    pub fn can_try(&self, e: &AlertEvent) -> bool {
        self.extra.is_some() || route(self.p, e).is_some_and(|r| !r.url.is_empty())
    }

    pub async fn send(&self, e: &AlertEvent) -> Outcome {
        let routed_any = route(self.p, e);
        let routed = routed_any.filter(|r| !r.url.is_empty());
        let mut out = match (routed, routed_any) {
            (Some(r), _) => match notify::deliver(&self.client, r, e).await {
                Ok(()) => Outcome {
                    delivered: true,
                    receiver: Some(r.name.clone()),
                    error: None,
                },
                Err(err) => Outcome {
                    delivered: false,
                    receiver: Some(r.name.clone()),
                    error: Some(err),
                },
            },
            (None, Some(disabled)) => Outcome {
                delivered: false,
                receiver: Some(disabled.name.clone()),
                error: Some(format!(
                    "receiver `{}` has no url (disabled)",
                    disabled.name
                )),
            },
            (None, None) => Outcome {
                delivered: false,
                receiver: None,
                error: Some("no receiver routed (alerts.routes)".into()),
            },
        };
        if let Some(x) = &self.extra {
            let copy = notify::deliver(&self.client, x, e).await;
            if routed.is_none() {
                match copy {
                    Ok(()) => {
                        out = Outcome {
                            delivered: true,
                            receiver: Some(x.name.clone()),
                            error: None,
                        };
                    }
                    Err(err) => out.error = Some(format!("--webhook: {err}")),
                }
            }
        }
        if !out.delivered {
            tracing::warn!(
                event_id = %e.event_id,
                error = out.error.as_deref().unwrap_or("?"),
                "alert not delivered; pending until a receiver takes it"
            );
        }
        out
    }
}

/// The events still pending: recorded undelivered for delivery, with no later
/// `delivered` or `expired` attempt. Oldest first.
pub async fn pending(ctx: &SessionContext) -> Result<Vec<AlertEvent>, AlertError> {
    let b = evaluate::query(
        ctx,
        "SELECT a.*, CAST(a.evaluated_at AS BIGINT) AS at FROM alerts a \
         LEFT ANTI JOIN (SELECT DISTINCT event_id FROM alert_deliveries \
           WHERE outcome IN ('delivered', 'expired')) d ON a.event_id = d.event_id \
         WHERE a.pending AND a.event_id IS NOT NULL \
         ORDER BY a.seq, a.dt, a.rule, a.subject",
        vec![],
    )
    .await?;
    Ok(store::events_from(&b))
}

/// Offer every pending event again, expiring those older than `max_pending`. Returns
/// the outcomes to record (`delivered`, `expired`) and how many were delivered, are still
/// pending, and expired.
pub async fn retry_pending(
    d: &Deliverer<'_>,
    pending: &[AlertEvent],
    now: jiff::Timestamp,
    seq: i64,
    max_pending: std::time::Duration,
) -> (Vec<store::Attempt>, Counts) {
    let now_us = now.as_microsecond();
    let mut attempts = Vec::new();
    let mut counts = Counts::default();
    for e in pending {
        let attempt = |outcome: &'static str, receiver: Option<String>, error: Option<String>| {
            store::Attempt {
                attempted_at_us: now_us,
                seq,
                event_id: e.event_id.clone(),
                dt: e.dt.clone(),
                rule: e.rule.clone(),
                subject: e.subject.clone(),
                receiver,
                outcome,
                error,
            }
        };
        if now_us - e.evaluated_at_us > max_pending.as_micros() as i64 {
            tracing::error!(
                event_id = %e.event_id,
                evaluated_at = %e.evaluated_at,
                "alert expired undelivered (alerts.max_pending_hours)"
            );
            counts.expired += 1;
            attempts.push(attempt(
                "expired",
                e.receiver.clone(),
                e.delivery_error.clone(),
            ));
            continue;
        }
        if !d.can_try(e) {
            // Nothing enabled to try (a disabled route, no --webhook): still pending, and
            // no warning every few minutes from `run` while the receiver stays off.
            counts.pending += 1;
            continue;
        }
        let o = d.send(e).await;
        if o.delivered {
            counts.delivered += 1;
            attempts.push(attempt("delivered", o.receiver, None));
        } else {
            // Not recorded: the event stays pending as it was (its row keeps the first
            // error, `send` logged this one), and `run`'s evaluation every few minutes
            // does not commit a row per pending event while a receiver is down.
            counts.pending += 1;
        }
    }
    (attempts, counts)
}

/// Pending events delivered now, still pending, and given up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: usize,
    pub pending: usize,
    pub expired: usize,
}
