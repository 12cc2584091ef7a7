//! `serve` and `sql`: where `crmdq serve` (and `run --http-listen`) listen, and who may
//! connect.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Ctx};
use crate::values::{Addr, Seconds};

/// Defaults of the `serve` section: loopback addresses (contract section 5).
pub mod default {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    pub const PG_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5433);
    pub const HTTP_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);
    pub const TRUST: bool = false;
    pub const MAX_FAILED_LOGINS: u32 = 5;
    pub const MAX_CONNECTIONS: usize = 64;
    pub const READY_MAX_LAG: i64 = 100_000;
    /// A partition may sit with lag > 0 and no progress this long before it counts as stalled.
    pub const STALL_AFTER: Duration = Duration::from_mins(5);
    pub const USER_ENV: &str = "CRMDQ_SQL_USER";
    pub const PASSWORD_ENV: &str = "CRMDQ_SQL_PASSWORD";
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// PostgreSQL-protocol listen address (`--pg-listen` overrides it).
    pub pg_listen: Option<Addr>,
    /// HTTP listen address (`--http-listen` overrides it).
    pub http_listen: Option<Addr>,
    /// PEM certificate chain and PKCS#8 key: with both, the SQL endpoint offers TLS.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Accept SQL clients without a password (loopback binds only). Off unless asked for.
    pub trust: Option<bool>,
    /// Failed logins per client address per minute before further attempts are refused.
    pub max_failed_logins: Option<u32>,
    /// Concurrent SQL connections at most.
    pub max_connections: Option<usize>,
    /// `/readyz` of `run`: ready while the summed consumer lag is at most this.
    pub ready_max_lag: Option<i64>,
    /// `run`: seconds without progress, with messages waiting, before a partition counts
    /// as stalled.
    pub stall_seconds: Option<Seconds>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    /// User name of the SQL endpoint. Default from `CRMDQ_SQL_USER`.
    pub user: Option<String>,
    /// Password of the SQL endpoint. Default from `CRMDQ_SQL_PASSWORD`.
    pub password: Option<String>,
}

/// Where and how `serve` (and `run --http-listen`) listen.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub pg_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// (certificate chain, private key), both PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trust: bool,
    pub max_failed_logins: u32,
    pub max_connections: usize,
    pub ready_max_lag: i64,
    /// A partition with messages waiting whose position has not moved for this long is
    /// stalled: logged as an error, counted, and `run`'s `/readyz` fails.
    pub stall_after: Duration,
    /// Credentials of the SQL endpoint and the JSON API (`sql.user`, `sql.password`).
    pub user: Option<String>,
    pub password: Option<String>,
}

pub(crate) fn validate(
    raw: RawServe,
    sql: RawSql,
    cx: &Ctx<'_>,
) -> Result<ServeConfig, ConfigError> {
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(c), Some(k)) => Some((cx.base.join(c), cx.base.join(k))),
        (None, None) => None,
        (Some(_), None) => return Err(cx.err("serve.tls_cert", "needs serve.tls_key too")),
        (None, Some(_)) => return Err(cx.err("serve.tls_key", "needs serve.tls_cert too")),
    };
    Ok(ServeConfig {
        pg_listen: raw.pg_listen.map_or(default::PG_LISTEN, |a| a.0),
        http_listen: raw.http_listen.map_or(default::HTTP_LISTEN, |a| a.0),
        tls,
        trust: raw.trust.unwrap_or(default::TRUST),
        max_failed_logins: raw.max_failed_logins.unwrap_or(default::MAX_FAILED_LOGINS),
        max_connections: raw.max_connections.unwrap_or(default::MAX_CONNECTIONS),
        ready_max_lag: raw.ready_max_lag.unwrap_or(default::READY_MAX_LAG),
        stall_after: raw.stall_seconds.map_or(default::STALL_AFTER, |s| s.0),
        user: sql.user.or_else(|| (cx.env)(default::USER_ENV)),
        password: sql.password.or_else(|| (cx.env)(default::PASSWORD_ENV)),
    })
}
