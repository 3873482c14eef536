//! Rate limits: how often one client address may try credentials, and how often anyone may try
//! to log in to one account. Every route that takes a password or a refresh token asks for an
//! [`AuthAttempt`]; log-in also asks [`Limits::check_login`] for the account; and every
//! authenticated request counts against its user ([`Limits::check_request`], asked by the
//! `Caller` extractor); and every WebSocket upgrade counts against its address ([`ConnectAttempt`],
//! taken by every dialect's upgrade handler). Over a limit the request gets 429 with
//! `Retry-After` before any work.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::http::{ApiError, AppState};

/// Forgetting addresses that have been quiet long enough to be back at a full allowance, every this
/// many checks, keeps the table as large as the set of recent clients.
const PRUNE_EVERY: u64 = 1024;

/// The server's rate limiters.
#[derive(Debug)]
pub struct Limits {
    auth: DefaultKeyedRateLimiter<IpAddr>,
    logins: DefaultKeyedRateLimiter<String>,
    requests: DefaultKeyedRateLimiter<String>,
    /// `None`: WebSocket connection attempts are not limited.
    connects: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
}

/// Log-in attempts on one account allowed in a burst, before the hourly rate applies.
const LOGIN_BURST: u32 = 10;

impl Limits {
    /// Limits allowing `auth_per_minute` credential attempts per client address per minute (in
    /// bursts of up to that many), and `logins_per_hour` log-in attempts per account per hour
    /// (in bursts of up to [`LOGIN_BURST`]), from all addresses together.
    /// `requests_per_minute` authenticated API requests are allowed per user (in bursts of up to
    /// that many), and `connects_per_minute` WebSocket connection attempts per client address (in
    /// bursts of up to that many; `None`: unlimited).
    pub fn new(
        auth_per_minute: NonZeroU32,
        logins_per_hour: NonZeroU32,
        requests_per_minute: NonZeroU32,
        connects_per_minute: Option<NonZeroU32>,
    ) -> Self {
        let burst = NonZeroU32::new(LOGIN_BURST.min(logins_per_hour.get())).unwrap_or(logins_per_hour);
        Self {
            auth: RateLimiter::keyed(Quota::per_minute(auth_per_minute)),
            logins: RateLimiter::keyed(Quota::per_hour(logins_per_hour).allow_burst(burst)),
            requests: RateLimiter::keyed(Quota::per_minute(requests_per_minute)),
            connects: connects_per_minute.map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts an authenticated API request by `user_id`; `Err` says how long to wait.
    ///
    /// # Errors
    /// The wait, when the user's allowance is used up.
    pub fn check_request(&self, user_id: &str) -> Result<(), Duration> {
        self.check(&self.requests, &user_id.to_owned())
    }

    /// Counts a log-in attempt on the account `email` (normalised); `Err` says how long to wait.
    ///
    /// # Errors
    /// The wait, when the account's allowance is used up.
    pub fn check_login(&self, email: &str) -> Result<(), Duration> {
        self.check(&self.logins, &email.to_owned())
    }

    fn check_auth(&self, address: IpAddr) -> Result<(), Duration> {
        self.check(&self.auth, &address)
    }

    fn check_connect(&self, address: IpAddr) -> Result<(), Duration> {
        match &self.connects {
            Some(limiter) => self.check(limiter, &address),
            None => Ok(()),
        }
    }

    /// One check against `limiter`, pruning it now and then.
    fn check<K: Clone + Eq + std::hash::Hash>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// Proof that the request is within its address's credential-attempt limit; take it as an
/// argument of every handler that checks a password or a token a client presents.
#[derive(Debug, Clone, Copy)]
pub struct AuthAttempt {
    /// The client's address (for the audit log).
    pub address: IpAddr,
}

impl FromRequestParts<AppState> for AuthAttempt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let address = client_address(parts)?;
        state.limits.check_auth(address).map_err(ApiError::RateLimited)?;
        Ok(Self { address })
    }
}

/// Proof that a WebSocket upgrade is within its address's connection-attempt limit; every
/// dialect's upgrade handler takes it, so a refused attempt costs no handshake.
#[derive(Debug, Clone, Copy)]
pub struct ConnectAttempt;

impl FromRequestParts<AppState> for ConnectAttempt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let address = client_address(parts)?;
        state.limits.check_connect(address).map_err(ApiError::RateLimited)?;
        Ok(Self)
    }
}

/// The address of the client that sent the request.
fn client_address(parts: &Parts) -> Result<IpAddr, ApiError> {
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => Ok(peer.ip()),
        // Served without connection info (not how `weft::run` serves): nothing to key on.
        None => Err(ApiError::Internal(anyhow::anyhow!("the server was started without client addresses"))),
    }
}
