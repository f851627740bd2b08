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

/// Without a relay, `email.outbox_dir` keeps each email as a readable file.
async fn outbox(backend: Backend) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("mail");
    let d = dir.clone();
    let srv = TestServer::start_with(backend, move |c| c.email.outbox_dir = Some(d)).await;
    let s = srv.services();
    assert!(s.mailer.enabled());
    s.mailer
        .send("a.b@finances.gouv.fr", "Code", "Votre code : 123456".into())
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(text.contains("To: a.b@finances.gouv.fr"), "{text}");
    assert!(text.ends_with("Votre code : 123456"), "{text}");
    // A bad address is refused before anything is written.
    let err = s
        .mailer
        .send("not an address", "x", "y".into())
        .await
        .unwrap_err();
    assert_eq!(err.errcode, "M_INVALID_PARAM");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    srv.stop().await;
}

crate::both_backends!(outbox);
