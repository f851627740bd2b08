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
        Ok(Self {
            transport,
            from,
            app_name: cfg.app_name.clone(),
        })
    }

    /// Whether an SMTP relay is configured.
    pub fn enabled(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends a plain-text email. Fails with `M_UNKNOWN` (500) when the relay refuses it or is
    /// unreachable, and `M_THREEPID_MEDIUM_NOT_SUPPORTED` (400) when no relay is configured.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<()> {
        let Some(transport) = &self.transport else {
            return Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                "M_THREEPID_MEDIUM_NOT_SUPPORTED",
                "This server does not send email",
            ));
        };
        let to: Mailbox = to
            .parse()
            .map_err(|_| Error::invalid_param("Invalid email address"))?;
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
