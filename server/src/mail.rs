//! Outgoing email over SMTP (`lettre`): the messages Weft sends and the one transport they go
//! through. Configured by `--smtp-url` and `--smtp-from`; without them no mail is sent and the
//! API hands links to the person who asked instead.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one delivery may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// SMTP settings, validated.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://host:port` (no TLS), `smtp://host:587?tls=required` (STARTTLS) or
    /// `smtps://user:password@host:465` (TLS from the start); it may carry credentials.
    pub url: String,
    /// The sender, `Name <address>` or an address.
    pub from: Mailbox,
}

/// An invite to send.
#[derive(Debug, Clone)]
pub struct InviteMail<'a> {
    /// The invited address.
    pub to: &'a str,
    /// Who invites.
    pub inviter: &'a str,
    /// The workspace's name.
    pub workspace: &'a str,
    /// The role it grants.
    pub role: &'a str,
    /// The token the invitee presents.
    pub token: &'a str,
    /// Where the server is reachable, for the link.
    pub public_url: &'a str,
    /// Validity, in whole hours.
    pub valid_hours: u64,
}

/// The SMTP transport.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer for `config`. Nothing is connected until the first message.
    ///
    /// # Errors
    /// When the URL is not an SMTP URL lettre understands.
    pub fn new(config: &MailConfig) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| anyhow::anyhow!("smtp_url: {e}"))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(Self { transport, from: config.from.clone() })
    }

    /// Sends `invite`.
    ///
    /// # Errors
    /// When the address does not parse or the SMTP server refuses or cannot be reached.
    pub async fn send_invite(&self, invite: &InviteMail<'_>) -> anyhow::Result<()> {
        let to: Mailbox = invite.to.parse().map_err(|e| anyhow::anyhow!("invite address: {e}"))?;
        let link = format!("{}/api/invites/{}/accept", invite.public_url.trim_end_matches('/'), invite.token);
        let body = format!(
            "{inviter} invited you to the workspace \"{workspace}\" on Weft, as {role}.\n\n\
             Your invite token: {token}\n\n\
             Accept it in your Weft app, or send an authenticated POST to\n{link}\n\n\
             Sign in (or sign up) with this address first. The invite is valid for {hours} hours.\n",
            inviter = invite.inviter,
            workspace = invite.workspace,
            role = invite.role,
            token = invite.token,
            hours = invite.valid_hours,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("You are invited to {} on Weft", invite.workspace))
            .body(body)?;
        self.transport.send(message).await?;
        Ok(())
    }
}
