//! Configuration: one [`Config`], assembled from command-line flags, `WEFT_*` environment variables
//! and an optional TOML file — in that order of precedence — and validated once at start-up.
//! Nothing else in the server reads the environment. `docs/operations.md` lists every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use weft_sync_core::yjs::RelayLimits;

use crate::mail::MailConfig;
use crate::rooms::RoomConfig;
use crate::storage::{Durability, StorageConfig};

/// The `weft` command line.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about = "Weft: a CRDT-first, local-first sync relay")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay.
    Serve(Box<Settings>),
    /// Manage accounts, against the data directory, without a running server.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Issue tokens, against the data directory, without a running server.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Forget all derived state (the search index) and derive it again from every workspace
    /// document's log. Run it with the server stopped.
    RebuildDerived {
        /// The server's settings (the data directory, above all).
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Inspect the stored items set aside because they broke their document.
    Quarantine {
        /// What to do.
        #[command(subcommand)]
        command: QuarantineCommand,
    },
}

/// `weft user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a password account, whatever the sign-up policy (the first account of an
    /// invite-only server, say). Reads the password from the first line of standard input.
    Create {
        /// Login address.
        #[arg(long)]
        email: String,
        /// Display name [default: the part of the address before `@`].
        #[arg(long)]
        name: Option<String>,
        /// The server's settings (the data directory, above all).
        #[command(flatten)]
        settings: Box<Settings>,
    },
}

/// `weft token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print an access token for an account (valid for `access_token_secs`), for scripts.
    Issue {
        /// The account's login address.
        #[arg(long)]
        email: String,
        /// The server's settings (the data directory, above all).
        #[command(flatten)]
        settings: Box<Settings>,
    },
}

/// `weft quarantine …`
#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List every quarantined item: id, document, kind, sequence number, size, author, when, why.
    List {
        /// Directory holding the database [default: ./weft-data].
        #[arg(long, env = "WEFT_DATA_DIR", default_value = "weft-data")]
        data_dir: PathBuf,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write one quarantined item's bytes, exactly as they were stored, to a file.
    Export {
        /// The item's id (from `list`).
        id: i64,
        /// File to write.
        #[arg(long)]
        out: PathBuf,
        /// Directory holding the database [default: ./weft-data].
        #[arg(long, env = "WEFT_DATA_DIR", default_value = "weft-data")]
        data_dir: PathBuf,
    },
}

/// Every setting, each optional so that the sources can be layered. Field names are the config-file
/// keys; flags are the same names in kebab case; environment variables are `WEFT_` + upper case.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of the settings below (flags and environment variables override it).
    #[arg(long, env = "WEFT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "WEFT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the database and blobs [default: ./weft-data].
    #[arg(long, env = "WEFT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `fsync` (acknowledge after fsync) or `buffered` (after the OS has the write) [default: fsync].
    #[arg(long, env = "WEFT_DURABILITY", value_enum)]
    pub durability: Option<Durability>,
    /// Largest WebSocket message accepted, in bytes [default: 33554432 = 32 MiB].
    #[arg(long, env = "WEFT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Largest stored size a document may grow to, in bytes [default: 268435456 = 256 MiB].
    #[arg(long, env = "WEFT_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<u64>,
    /// Seconds a document with no connections stays loaded [default: 30].
    #[arg(long, env = "WEFT_IDLE_UNLOAD_SECS")]
    pub idle_unload_secs: Option<u64>,
    /// Log entries after which a document's log is folded into a snapshot [default: 1000].
    #[arg(long, env = "WEFT_COMPACT_AFTER_UPDATES")]
    pub compact_after_updates: Option<u64>,
    /// Frames queued for one connection before it counts as too slow and is closed [default: 1024].
    #[arg(long, env = "WEFT_PEER_OUTBOX")]
    pub peer_outbox: Option<usize>,
    /// Snapshots larger than this many bytes are stored as blobs, not in SQLite [default: 1048576].
    #[arg(long, env = "WEFT_SNAPSHOT_INLINE_MAX_BYTES")]
    pub snapshot_inline_max_bytes: Option<usize>,
    /// Seconds to wait for connections and documents to finish on shutdown [default: 10].
    #[arg(long, env = "WEFT_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Log filter, `tracing` env-filter syntax [default: info].
    #[arg(long, env = "WEFT_LOG")]
    pub log: Option<String>,
    /// Secret for HS256 JWTs; when set, every connection needs a token signed with it
    /// [default: none — the relay is open].
    #[arg(long, env = "WEFT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Lifetime of an access token, in seconds [default: 900 = 15 min].
    #[arg(long, env = "WEFT_ACCESS_TOKEN_SECS")]
    pub access_token_secs: Option<u64>,
    /// Lifetime of a refresh token, in seconds [default: 2592000 = 30 days].
    #[arg(long, env = "WEFT_REFRESH_TOKEN_SECS")]
    pub refresh_token_secs: Option<u64>,
    /// Sign-up, log-in and refresh attempts allowed per client address per minute; more get 429
    /// [default: 30].
    #[arg(long, env = "WEFT_AUTH_ATTEMPTS_PER_MINUTE")]
    pub auth_attempts_per_minute: Option<u32>,
    /// Log-in attempts allowed per account per hour, from all addresses together (bursts of up
    /// to 10); more get 429 [default: 60].
    #[arg(long, env = "WEFT_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_HOUR")]
    pub login_attempts_per_account_per_hour: Option<u32>,
    /// Authenticated REST requests allowed per user per minute (in bursts of that many); more
    /// get 429 [default: 1200].
    #[arg(long, env = "WEFT_API_REQUESTS_PER_MINUTE")]
    pub api_requests_per_minute: Option<u32>,
    /// Who may sign up: `open` (anyone) or `invite` (an address with a pending invite, and the
    /// first account of a server that has none) [default: open].
    #[arg(long, env = "WEFT_SIGNUP", value_enum)]
    pub signup: Option<SignupPolicy>,
    /// SMTP server for invite emails: `smtp://host:port`, `smtp://host:587?tls=required` or
    /// `smtps://user:password@host:465` [default: none — invite links go to the inviter].
    #[arg(long, env = "WEFT_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of Weft's emails, `Name <address>` or an address; required with `smtp_url`.
    #[arg(long, env = "WEFT_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Where clients reach this server, for links in emails [default: http://LISTEN].
    #[arg(long, env = "WEFT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// WebSocket connection attempts one client address may make per minute, in bursts of that
    /// many; more get HTTP 429 with `Retry-After`. `0`: unlimited [default: 1200].
    #[arg(long, env = "WEFT_WS_CONNECTS_PER_ADDRESS_PER_MINUTE")]
    pub ws_connects_per_address_per_minute: Option<u32>,
    /// Messages a channel document or segment holds before REST posts continue in a new segment
    /// (`docs/schemas.md`, Long channels); at least 2 [default: 2000].
    #[arg(long, env = "WEFT_CHANNEL_SEGMENT_MESSAGES")]
    pub channel_segment_messages: Option<u32>,
    /// Milliseconds without an update after which an editing session becomes a version
    /// (`docs/history.md`) [default: 30000].
    #[arg(long, env = "WEFT_VERSION_IDLE_MS")]
    pub version_idle_ms: Option<u64>,
    /// Updates of continuous editing after which a version is made anyway; at least 1 [default: 500].
    #[arg(long, env = "WEFT_VERSION_EVERY_UPDATES")]
    pub version_every_updates: Option<usize>,
    /// Seconds of continuous editing after which a version is made anyway [default: 600].
    #[arg(long, env = "WEFT_VERSION_EVERY_SECS")]
    pub version_every_secs: Option<u64>,
    /// How automatic versions are thinned with age: `AGE=SPACING,...` (past AGE, keep one per
    /// SPACING; durations like `90s`, `15m`, `24h`, `7d`); named and restore versions are kept
    /// [default: `24h=1h,7d=1d`].
    #[arg(long, env = "WEFT_VERSION_RETENTION")]
    pub version_retention: Option<String>,
    /// What a connection without a token may do to free documents (those not created through the
    /// API): `none`, `read` or `write` [default: `write` on a loopback address with no
    /// `jwt_secret`; `none` with one]. Listening elsewhere with no `jwt_secret` requires choosing.
    /// `--anonymous` alone is `read`.
    #[arg(long, env = "WEFT_ANONYMOUS", value_enum, num_args = 0..=1, default_missing_value = "read")]
    pub anonymous: Option<Anonymous>,
    /// An external identity provider's issuer (`iss`): its tokens are accepted in place of Weft's
    /// own, and their `sub` maps to an account created on first use. Needs `idp_audience` and one
    /// of `idp_secret`, `idp_public_key_file`, `idp_jwks_file`.
    #[arg(long, env = "WEFT_IDP_ISSUER")]
    pub idp_issuer: Option<String>,
    /// The audience (`aud`) the provider's tokens must include.
    #[arg(long, env = "WEFT_IDP_AUDIENCE")]
    pub idp_audience: Option<String>,
    /// The provider's HS256 secret (at least 16 bytes).
    #[arg(long, env = "WEFT_IDP_SECRET", hide_env_values = true)]
    pub idp_secret: Option<String>,
    /// A PEM file with the provider's public key (RSA: RS256; P-256: ES256; Ed25519: EdDSA).
    #[arg(long, env = "WEFT_IDP_PUBLIC_KEY_FILE")]
    pub idp_public_key_file: Option<PathBuf>,
    /// A JWKS file (`{"keys": [...]}`, each key with `alg`) with the provider's public keys.
    #[arg(long, env = "WEFT_IDP_JWKS_FILE")]
    pub idp_jwks_file: Option<PathBuf>,
    /// The algorithm a PEM key signs with, when not the key type's usual one (`RS384`, `PS256` …).
    #[arg(long, env = "WEFT_IDP_ALGORITHM")]
    pub idp_algorithm: Option<String>,
}

/// What a connection without a token may do to free documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// Nothing: every connection presents a token.
    None,
    /// Read (sync and presence); writes are refused as for any read-only connection.
    Read,
    /// Read and write: the relay is open.
    Write,
}

/// Who may create an account with `POST /api/auth/signup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SignupPolicy {
    /// Anyone.
    #[default]
    Open,
    /// Only an address with a pending invite (and the first account, on a server with none).
    Invite,
}

impl Settings {
    /// Fills every unset field from `lower`.
    fn or(self, lower: Settings) -> Settings {
        Settings {
            config: self.config.or(lower.config),
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            durability: self.durability.or(lower.durability),
            max_message_bytes: self.max_message_bytes.or(lower.max_message_bytes),
            max_document_bytes: self.max_document_bytes.or(lower.max_document_bytes),
            idle_unload_secs: self.idle_unload_secs.or(lower.idle_unload_secs),
            compact_after_updates: self.compact_after_updates.or(lower.compact_after_updates),
            peer_outbox: self.peer_outbox.or(lower.peer_outbox),
            snapshot_inline_max_bytes: self.snapshot_inline_max_bytes.or(lower.snapshot_inline_max_bytes),
            shutdown_grace_secs: self.shutdown_grace_secs.or(lower.shutdown_grace_secs),
            log: self.log.or(lower.log),
            jwt_secret: self.jwt_secret.or(lower.jwt_secret),
            access_token_secs: self.access_token_secs.or(lower.access_token_secs),
            refresh_token_secs: self.refresh_token_secs.or(lower.refresh_token_secs),
            auth_attempts_per_minute: self.auth_attempts_per_minute.or(lower.auth_attempts_per_minute),
            signup: self.signup.or(lower.signup),
            api_requests_per_minute: self.api_requests_per_minute.or(lower.api_requests_per_minute),
            login_attempts_per_account_per_hour: self
                .login_attempts_per_account_per_hour
                .or(lower.login_attempts_per_account_per_hour),
            smtp_url: self.smtp_url.or(lower.smtp_url),
            smtp_from: self.smtp_from.or(lower.smtp_from),
            public_url: self.public_url.or(lower.public_url),
            anonymous: self.anonymous.or(lower.anonymous),
            ws_connects_per_address_per_minute: self
                .ws_connects_per_address_per_minute
                .or(lower.ws_connects_per_address_per_minute),
            channel_segment_messages: self.channel_segment_messages.or(lower.channel_segment_messages),
            version_idle_ms: self.version_idle_ms.or(lower.version_idle_ms),
            version_every_updates: self.version_every_updates.or(lower.version_every_updates),
            version_every_secs: self.version_every_secs.or(lower.version_every_secs),
            version_retention: self.version_retention.or(lower.version_retention),
            idp_issuer: self.idp_issuer.or(lower.idp_issuer),
            idp_audience: self.idp_audience.or(lower.idp_audience),
            idp_secret: self.idp_secret.or(lower.idp_secret),
            idp_public_key_file: self.idp_public_key_file.or(lower.idp_public_key_file),
            idp_jwks_file: self.idp_jwks_file.or(lower.idp_jwks_file),
            idp_algorithm: self.idp_algorithm.or(lower.idp_algorithm),
        }
    }
}

/// Accounts: how long tokens live.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    /// Lifetime of an access token.
    pub access_ttl: Duration,
    /// Lifetime of a refresh token.
    pub refresh_ttl: Duration,
    /// Credential attempts (sign-up, log-in, refresh) per client address per minute.
    pub auth_attempts_per_minute: std::num::NonZeroU32,
    /// Log-in attempts per account per hour.
    pub login_attempts_per_account_per_hour: std::num::NonZeroU32,
    /// Authenticated REST requests per user per minute.
    pub api_requests_per_minute: std::num::NonZeroU32,
    /// WebSocket connection attempts per client address per minute (`None`: unlimited).
    pub ws_connects_per_address_per_minute: Option<std::num::NonZeroU32>,
    /// Who may sign up.
    pub signup: SignupPolicy,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Storage location and durability.
    pub storage: StorageConfig,
    /// Live-document tuning.
    pub rooms: RoomConfig,
    /// Largest WebSocket message accepted.
    pub max_message_bytes: usize,
    /// How long shutdown waits for connections and documents.
    pub shutdown_grace: Duration,
    /// Log filter.
    pub log: String,
    /// Secret for HS256 JWTs; `None` leaves the relay open.
    pub jwt_secret: Option<String>,
    /// Accounts: token lifetimes.
    pub accounts: AccountsConfig,
    /// Outgoing email; `None`: none is sent.
    pub mail: Option<MailConfig>,
    /// Where clients reach this server (no trailing slash).
    pub public_url: String,
    /// How often Hocuspocus v4 sockets are pinged. Not a setting: it must stay well under the
    /// providers' own 30 s silence timeout; tests shorten it.
    pub hocuspocus_ping: Duration,
    /// The external identity provider, when configured.
    pub identity_provider: Option<crate::auth::providers::ProviderConfig>,
    /// What a connection without a token may do to free documents.
    pub anonymous: Anonymous,
    /// Messages a channel document or segment holds before REST posts open a new segment.
    pub channel_segment_messages: usize,
}

impl Config {
    /// The defaults, storing under `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self::resolve(Settings { data_dir: Some(data_dir.into()), ..Settings::default() })
            .expect("the defaults are valid")
    }

    /// Layers `settings` (flags and environment, as clap parsed them) over the config file they name,
    /// over the defaults, and validates the result.
    ///
    /// # Errors
    /// When the file cannot be read or parsed, or a value is out of range.
    pub fn load(settings: Settings) -> anyhow::Result<Self> {
        let from_file = match &settings.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        Self::resolve(settings.or(from_file))
    }

    fn resolve(s: Settings) -> anyhow::Result<Self> {
        let max_message_bytes = s.max_message_bytes.unwrap_or(32 * 1024 * 1024);
        let max_document_bytes = s.max_document_bytes.unwrap_or(256 * 1024 * 1024);
        let peer_outbox = s.peer_outbox.unwrap_or(1024);
        let compact_after_updates = s.compact_after_updates.unwrap_or(1000);
        if max_message_bytes < 1024 {
            bail!("max_message_bytes must be at least 1024, got {max_message_bytes}");
        }
        if max_document_bytes < 1024 {
            bail!("max_document_bytes must be at least 1024, got {max_document_bytes}");
        }
        if peer_outbox == 0 {
            bail!("peer_outbox must be at least 1");
        }
        if compact_after_updates == 0 {
            bail!("compact_after_updates must be at least 1");
        }
        if s.jwt_secret.as_ref().is_some_and(|secret| !secret.is_empty() && secret.len() < 16) {
            bail!("jwt_secret must be at least 16 bytes long");
        }
        let access_token_secs = s.access_token_secs.unwrap_or(15 * 60);
        let refresh_token_secs = s.refresh_token_secs.unwrap_or(30 * 24 * 3600);
        if !(10..=24 * 3600).contains(&access_token_secs) {
            bail!("access_token_secs must be between 10 and 86400, got {access_token_secs}");
        }
        if refresh_token_secs < access_token_secs {
            bail!("refresh_token_secs must be at least access_token_secs");
        }
        let Some(auth_attempts_per_minute) =
            std::num::NonZeroU32::new(s.auth_attempts_per_minute.unwrap_or(30))
        else {
            bail!("auth_attempts_per_minute must be at least 1");
        };
        let Some(login_attempts_per_account_per_hour) =
            std::num::NonZeroU32::new(s.login_attempts_per_account_per_hour.unwrap_or(60))
        else {
            bail!("login_attempts_per_account_per_hour must be at least 1");
        };
        let Some(api_requests_per_minute) =
            std::num::NonZeroU32::new(s.api_requests_per_minute.unwrap_or(1200))
        else {
            bail!("api_requests_per_minute must be at least 1");
        };
        let mail = match (s.smtp_url.filter(|u| !u.is_empty()), s.smtp_from) {
            (None, _) => None,
            (Some(_), None) => bail!("smtp_from is required with smtp_url"),
            (Some(url), Some(from)) => {
                let from = from.parse().map_err(|e| anyhow::anyhow!("smtp_from {from:?}: {e}"))?;
                let config = MailConfig { url, from };
                crate::mail::Mailer::new(&config)?;
                Some(config)
            }
        };
        let identity_provider = identity_provider(
            s.idp_issuer,
            s.idp_audience,
            s.idp_secret,
            s.idp_public_key_file,
            s.idp_jwks_file,
            s.idp_algorithm,
        )?;
        let listen = s.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let jwt_secret = s.jwt_secret.filter(|secret| !secret.is_empty());
        let anonymous = match (s.anonymous, &jwt_secret) {
            (Some(anonymous), _) => anonymous,
            (None, Some(_)) => Anonymous::None,
            (None, None) if listen.ip().is_loopback() => Anonymous::Write,
            (None, None) => bail!(
                "refusing to listen on {listen} with no way to tell clients apart: every free document \
                 (one a client names without creating it through the API) would be open to anyone on \
                 the network. Choose one: --anonymous none (connections sign in; free documents then \
                 need a token naming an account), --jwt-secret (your application issues tokens), or \
                 --anonymous read / --anonymous write (a trusted network). See docs/operations.md"
            ),
        };
        let public_url = match s.public_url {
            Some(url) => {
                let parsed = url::Url::parse(&url).map_err(|e| anyhow::anyhow!("public_url {url:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("public_url must be an http(s) URL, got {url:?}");
                }
                url.trim_end_matches('/').to_owned()
            }
            None => format!("http://{listen}"),
        };
        let every_updates = s.version_every_updates.unwrap_or(500);
        if every_updates == 0 {
            bail!("version_every_updates must be at least 1");
        }
        let retention = match &s.version_retention {
            Some(spec) => crate::storage::versions::Retention::parse(spec)
                .map_err(|e| anyhow::anyhow!("version_retention: {e}"))?,
            None => crate::storage::versions::Retention::default(),
        };
        let history = crate::rooms::HistoryConfig {
            idle: Duration::from_millis(s.version_idle_ms.unwrap_or(30_000)),
            every_updates,
            every: Duration::from_secs(s.version_every_secs.unwrap_or(600)),
            retention,
        };
        Ok(Self {
            listen,
            mail,
            public_url,
            storage: StorageConfig {
                data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("weft-data")),
                durability: s.durability.unwrap_or(Durability::Fsync),
                snapshot_inline_max: s.snapshot_inline_max_bytes.unwrap_or(1024 * 1024),
            },
            rooms: RoomConfig {
                limits: RelayLimits { max_document_bytes },
                idle_unload: Duration::from_secs(s.idle_unload_secs.unwrap_or(30)),
                compact_after_updates,
                peer_outbox,
                room_inbox: 1024,
                history,
            },
            max_message_bytes,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs.unwrap_or(10)),
            log: s.log.unwrap_or_else(|| "info".to_owned()),
            jwt_secret,
            accounts: AccountsConfig {
                access_ttl: Duration::from_secs(access_token_secs),
                refresh_ttl: Duration::from_secs(refresh_token_secs),
                auth_attempts_per_minute,
                login_attempts_per_account_per_hour,
                api_requests_per_minute,
                ws_connects_per_address_per_minute: std::num::NonZeroU32::new(
                    s.ws_connects_per_address_per_minute.unwrap_or(1200),
                ),
                signup: s.signup.unwrap_or_default(),
            },
            hocuspocus_ping: Duration::from_secs(15),
            identity_provider,
            anonymous,
            channel_segment_messages: s.channel_segment_messages.unwrap_or(2000).max(2) as usize,
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The identity provider the `idp_*` settings describe, checked (its keys parse) now rather than
/// at the first token.
fn identity_provider(
    issuer: Option<String>,
    audience: Option<String>,
    secret: Option<String>,
    public_key_file: Option<PathBuf>,
    jwks_file: Option<PathBuf>,
    algorithm: Option<String>,
) -> anyhow::Result<Option<crate::auth::providers::ProviderConfig>> {
    use crate::auth::providers::{ProviderConfig, ProviderKey};
    let issuer = issuer.filter(|i| !i.is_empty());
    let keys = usize::from(secret.is_some())
        + usize::from(public_key_file.is_some())
        + usize::from(jwks_file.is_some());
    let Some(issuer) = issuer else {
        if keys > 0 || audience.is_some() {
            bail!("idp_issuer is required with the other idp_* settings");
        }
        return Ok(None);
    };
    let Some(audience) = audience.filter(|a| !a.is_empty()) else {
        bail!("idp_audience is required with idp_issuer")
    };
    if keys != 1 {
        bail!("give exactly one of idp_secret, idp_public_key_file and idp_jwks_file with idp_issuer");
    }
    let read = |path: &PathBuf, what: &str| {
        std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
    };
    let algorithm = algorithm
        .map(|a| {
            a.parse::<jsonwebtoken::Algorithm>()
                .map_err(|_| anyhow::anyhow!("idp_algorithm {a:?} is not a JWT algorithm"))
        })
        .transpose()?;
    let key = match (secret, public_key_file, jwks_file) {
        (Some(secret), _, _) => ProviderKey::Secret(secret),
        (_, Some(path), _) => ProviderKey::Pem { pem: read(&path, "idp_public_key_file")?, algorithm },
        (_, _, Some(path)) => ProviderKey::Jwks(read(&path, "idp_jwks_file")?),
        (None, None, None) => unreachable!("exactly one key source was checked above"),
    };
    let config = ProviderConfig { issuer, audience, key };
    crate::auth::providers::Provider::new(&config).context("idp settings")?;
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weft.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\npeer_outbox = 7\ndurability = \"buffered\"\n")
            .unwrap();
        let flags = Settings { config: Some(file), peer_outbox: Some(9), ..Settings::default() };
        let config = Config::load(flags).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.rooms.peer_outbox, 9);
        assert_eq!(config.storage.durability, Durability::Buffered);
        assert_eq!(config.rooms.compact_after_updates, 1000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weft.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(Config::load(Settings { config: Some(file), ..Settings::default() }).is_err());
        assert!(Config::load(Settings { peer_outbox: Some(0), ..Settings::default() }).is_err());
    }

    #[test]
    fn the_anonymous_flag_alone_allows_reading() {
        let Command::Serve(settings) =
            Cli::try_parse_from(["weft", "serve", "--anonymous", "--listen", "0.0.0.0:1"]).unwrap().command
        else {
            panic!("serve")
        };
        assert_eq!(Config::resolve(*settings).unwrap().anonymous, Anonymous::Read);
    }

    #[test]
    fn a_non_loopback_address_needs_an_explicit_choice_about_anonymous_access() {
        let public = Settings { listen: Some("0.0.0.0:8080".parse().unwrap()), ..Settings::default() };
        let err = Config::resolve(public.clone()).unwrap_err().to_string();
        assert!(err.contains("--anonymous none") && err.contains("0.0.0.0:8080"), "{err}");
        let chosen =
            Config::resolve(Settings { anonymous: Some(Anonymous::None), ..public.clone() }).unwrap();
        assert_eq!(chosen.anonymous, Anonymous::None);
        let open = Config::resolve(Settings { anonymous: Some(Anonymous::Write), ..public.clone() }).unwrap();
        assert_eq!(open.anonymous, Anonymous::Write);
        let secret = Config::resolve(Settings { jwt_secret: Some("s".repeat(16)), ..public }).unwrap();
        assert_eq!(secret.anonymous, Anonymous::None);
        assert_eq!(Config::resolve(Settings::default()).unwrap().anonymous, Anonymous::Write);
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = Config::load(Settings::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.storage.data_dir, PathBuf::from("weft-data"));
        assert_eq!(config.storage.durability, Durability::Fsync);
        assert!(config.max_message_bytes > 10_000_000, "a 10 MB paste must fit");
    }
}
