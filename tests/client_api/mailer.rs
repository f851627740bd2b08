//! The SMTP path: Palabre's mailer delivers to a relay (the test sink), text decoded intact.

use crate::common::*;
use crate::smtp_sink::SmtpSink;

async fn delivers(backend: Backend) {
    let sink = SmtpSink::start().await;
    let srv = TestServer::start_with(backend, |c| sink.configure(&mut c.email)).await;
    let long = format!(
        "https://example.test/_matrix/renew?token={}&x=é",
        "a".repeat(120)
    );
    srv.services()
        .mailer
        .send(
            "Jean.Dupont@interieur.gouv.fr",
            "Bienvenue",
            format!("Bonjour Hélène,\n{long}\n"),
        )
        .await
        .unwrap();
    let mail = sink.wait_for("jean.dupont@interieur.gouv.fr", 0).await;
    assert_eq!(mail.subject, "Bienvenue");
    assert!(mail.body.contains("Bonjour Hélène"), "{}", mail.body);
    assert_eq!(
        crate::smtp_sink::link_in(&mail.body).as_deref(),
        Some(long.as_str())
    );
    srv.stop().await;
}

crate::both_backends!(delivers);
