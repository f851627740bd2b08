//! Outgoing email over SMTP (lettre): address validation, password reset, "address already in
//! use", expiry reminders, invitations. One transport per process, built from `[email]`.

use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::authentication::Credentials,
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};

use crate::{
    config::{EmailConfig, SmtpSecurity},
    Error, Result,
};

pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// `email.outbox_dir`: emails written as files instead (no SMTP relay configured).
    outbox: Option<std::path::PathBuf>,
    from: Mailbox,
    pub app_name: String,
}

impl Mailer {
    pub fn new(cfg: &EmailConfig) -> anyhow::Result<Self> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("email.from {:?}: {e}", cfg.from))?;
        let transport = match &cfg.smtp_host {
            None => None,
            Some(host) => {
                let builder = match cfg.smtp_security {
                    SmtpSecurity::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    }
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?
                    }
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
                };
                let mut builder = builder
                    .port(cfg.smtp_port)
                    .timeout(Some(std::time::Duration::from_secs(30)));
                if let (Some(u), Some(p)) = (&cfg.smtp_username, &cfg.smtp_password) {
                    builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
                }
                Some(builder.build())
            }
        };
        let outbox = match (&transport, &cfg.outbox_dir) {
            (None, Some(dir)) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("email.outbox_dir {}: {e}", dir.display()))?;
                Some(dir.clone())
            }
            _ => None,
        };
        Ok(Self {
            transport,
            outbox,
            from,
            app_name: cfg.app_name.clone(),
        })
    }

    /// Whether emails can be sent (an SMTP relay or an outbox directory is configured).
    pub fn enabled(&self) -> bool {
        self.transport.is_some() || self.outbox.is_some()
    }

    /// Ok when emails can be sent; 400 `M_THREEPID_MEDIUM_NOT_SUPPORTED` otherwise.
    pub fn require(&self) -> Result<()> {
        if self.enabled() {
            return Ok(());
        }
        Err(Error::threepid_medium_not_supported(
            "This server does not send email",
        ))
    }

    /// Writes an email as a readable text file `<ms>-<n>-<to>.txt` in the outbox directory.
    async fn write_outbox(
        &self,
        dir: &std::path::Path,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<()> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let safe: String = to
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{}-{n}-{safe}.txt", crate::util::now_ms()));
        let text = format!(
            "From: {}\nTo: {to}\nSubject: {subject}\n\n{body}",
            self.from
        );
        tokio::fs::write(&path, text).await.map_err(|e| {
            tracing::warn!(error = %e, path = %path.display(), "cannot write an email to the outbox");
            Error::unknown("Failed to send email")
        })?;
        tracing::info!(to, subject, path = %path.display(), "email written to the outbox");
        Ok(())
    }

    /// Sends a plain-text email (or writes it to the outbox directory). Fails with `M_UNKNOWN`
    /// (500) when the relay refuses it or is unreachable, and `M_THREEPID_MEDIUM_NOT_SUPPORTED`
    /// (400) when neither a relay nor an outbox is configured.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<()> {
        // A bare address, never a mailbox with a display name: what is mailed is exactly the
        // address that was gated and bound.
        let Ok(address) = to.parse::<lettre::Address>() else {
            return Err(Error::invalid_param("Invalid email address"));
        };
        if let (None, Some(dir)) = (&self.transport, &self.outbox) {
            return self.write_outbox(dir, to, subject, &body).await;
        }
        let Some(transport) = &self.transport else {
            return self.require();
        };
        let to = Mailbox::new(None, address);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::unknown(format!("Cannot build email: {e}")))?;
        transport.send(message).await.map_err(|e| {
            tracing::warn!(error = %e, "SMTP relay refused an email");
            Error::unknown("Failed to send email")
        })?;
        Ok(())
    }
}
