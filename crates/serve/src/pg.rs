//! The PostgreSQL wire-protocol endpoint: `datafusion-postgres` (pgwire + a
//! `pg_catalog` emulation) over a read-only DataFusion session of the warehouse.
//!
//! What crmdq adds around it: SCRAM-SHA-256 password authentication (trust only when the
//! pipeline asks for it, on loopback), failed logins logged and rate-limited per client
//! address, a hook that refuses every statement that could write, optional TLS, a
//! connection cap, and a graceful stop.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, pgwire::api::ClientInfo};
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::Response;
use pgwire::api::{ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
pub use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ServeError;

/// The database name clients connect to (contract section 5).
pub const DATABASE: &str = "crmdq";

/// How SQL clients authenticate.
#[derive(Clone)]
pub enum Auth {
    /// SCRAM-SHA-256 against one user and password.
    Password { user: String, password: String },
    /// No password (asked for explicitly with `serve.trust: true`; loopback only).
    Trust,
}

impl Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Password { user, .. } => write!(f, "Password {{ user: {user:?} }}"),
            Auth::Trust => write!(f, "Trust"),
        }
    }
}

/// Failed logins per client address in a sliding minute.
#[derive(Debug)]
pub struct LoginLimiter {
    max_per_minute: u32,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max_per_minute: u32) -> Self {
        LoginLimiter {
            max_per_minute,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn recent(q: &mut VecDeque<Instant>) -> usize {
        while q
            .front()
            .is_some_and(|t| t.elapsed() > Duration::from_mins(1))
        {
            q.pop_front();
        }
        q.len()
    }

    /// True while `ip` has used up its failed attempts for the last minute.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let mut m = self.failures.lock().expect("limiter lock");
        m.get_mut(&ip)
            .is_some_and(|q| Self::recent(q) >= self.max_per_minute as usize)
    }

    /// Record a failure; returns the failures in the last minute.
    pub fn fail(&self, ip: IpAddr) -> usize {
        let mut m = self.failures.lock().expect("limiter lock");
        let q = m.entry(ip).or_default();
        q.push_back(Instant::now());
        Self::recent(q)
    }
}

/// One configured user; any other user name gets a password nobody knows, so the
/// failure looks the same whether the user or the password was wrong.
#[derive(Debug)]
struct OneUser {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
    decoy: Vec<u8>,
}

#[async_trait]
impl AuthSource for OneUser {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salted = if login.user() == Some(self.user.as_str()) {
            self.salted.clone()
        } else {
            self.decoy.clone()
        };
        Ok(Password::new(Some(self.salt.clone()), salted))
    }
}

struct TrustStartup {
    manager: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.manager.clone())
    }
}

enum Inner {
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Trust(TrustStartup),
}

/// The per-connection startup handler: refuses addresses over their failed-login budget
/// and unknown databases, delegates authentication, and logs and counts failures.
pub struct GuardedStartup {
    inner: Inner,
    limiter: Arc<LoginLimiter>,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for GuardedStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let ip = client.socket_addr().ip();
        if let PgWireFrontendMessage::Startup(s) = &message {
            if self.limiter.blocked(ip) {
                tracing::warn!(client = %ip, "SQL login refused: too many failed logins from this address");
                return Err(fatal(
                    "28000",
                    "too many failed logins from this address; try again in a minute".into(),
                ));
            }
            let db = s
                .parameters
                .get("database")
                .or_else(|| s.parameters.get("user"));
            if let Some(db) = db
                && db != DATABASE
            {
                return Err(fatal(
                    "3D000",
                    format!(
                        "database \"{db}\" does not exist (crmdq serves database \"{DATABASE}\")"
                    ),
                ));
            }
        }
        let r = match &self.inner {
            Inner::Scram(h) => h.on_startup(client, message).await,
            Inner::Trust(h) => h.on_startup(client, message).await,
        };
        if let Err(e) = &r
            && matches!(
                e,
                PgWireError::InvalidPassword(_) | PgWireError::InvalidScramMessage(_)
            )
        {
            let user = client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let n = self.limiter.fail(ip);
            tracing::warn!(client = %ip, user = %user, failures_last_minute = n, "SQL login failed");
        }
        r
    }
}

/// Refuses every statement that could change anything: the endpoint is read-only.
#[derive(Debug)]
pub struct ReadOnlyHook;

/// Statements a read-only endpoint runs: queries, EXPLAIN, SHOW, SET (session
/// settings only), transaction control and cursors (clients wrap queries in them).
fn allowed(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowStatus { .. }
            | Statement::Set(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
    )
}

fn refused(s: &Statement) -> PgWireError {
    let text = s.to_string();
    let verb: String = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "25006".to_string(), // read_only_sql_transaction
        format!(
            "crmdq serve is read-only: `{verb}` is refused (the warehouse changes only through crmdq ingest, run and score)"
        ),
    )))
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!allowed(statement)).then(|| Err(refused(statement)))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        (!allowed(statement)).then(|| Err(refused(statement)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        (!allowed(statement)).then(|| Err(refused(statement)))
    }
}

struct QuietErrors;

impl ErrorHandler for QuietErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        tracing::debug!(client = %client.socket_addr(), error = %error, "SQL error sent to client");
    }
}

/// pgwire handlers: one query service shared by all connections, a fresh startup
/// handler (authentication state) per connection.
pub struct Handlers {
    service: Arc<DfSessionService>,
    auth: Auth,
    scram_source: Option<Arc<OneUser>>,
    limiter: Arc<LoginLimiter>,
    manager: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub fn new(ctx: Arc<SessionContext>, auth: Auth, limiter: Arc<LoginLimiter>) -> Self {
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnlyHook),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let scram_source = match &auth {
            Auth::Password { user, password } => {
                let salt: [u8; 16] = rand::random();
                let decoy: [u8; 32] = rand::random();
                Some(Arc::new(OneUser {
                    user: user.clone(),
                    salted: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
                    decoy: decoy.to_vec(),
                    salt: salt.to_vec(),
                }))
            }
            Auth::Trust => None,
        };
        let manager = Arc::new(ConnectionManager::new());
        Handlers {
            service: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
            auth,
            scram_source,
            limiter,
            cancel: Arc::new(DefaultCancelHandler::new(manager.clone())),
            manager,
        }
    }
}

const SCRAM_ITERATIONS: usize = 4096;

fn parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = format!("16.6 (crmdq {})", env!("CARGO_PKG_VERSION"));
    p.is_superuser = false;
    p.default_transaction_read_only = true;
    p
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let inner = match (&self.auth, &self.scram_source) {
            (Auth::Password { .. }, Some(src)) => {
                let mut scram = ScramAuth::new(src.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                Inner::Scram(
                    SASLAuthStartupHandler::new(Arc::new(parameters()))
                        .with_scram(scram)
                        .with_connection_manager(self.manager.clone()),
                )
            }
            _ => Inner::Trust(TrustStartup {
                manager: self.manager.clone(),
            }),
        };
        Arc::new(GuardedStartup {
            inner,
            limiter: self.limiter.clone(),
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(QuietErrors)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// TLS from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, e: String| ServeError::Tls {
        path: path.to_path_buf(),
        message: e,
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accept SQL connections on `listener` until `cancel` fires.
pub async fn accept_loop(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    cancel: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    // Each connection's task; on cancel they end and are waited for.
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (socket, addr): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            () = cancel.cancelled() => {
                connections.close();
                connections.wait().await;
                return;
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "SQL accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(client = %addr, max_connections, "SQL connection refused: connection limit reached");
            continue;
        };
        let handlers = handlers.clone();
        let tls = tls.clone();
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = cancel.cancelled() => {}
                r = pgwire::tokio::process_socket(socket, tls, handlers) => {
                    if let Err(e) = r {
                        tracing::debug!(client = %addr, error = %e, "SQL connection ended with an error");
                    }
                }
            }
        });
    }
}
