//! A test SMTP server on an ephemeral loopback port that keeps every message it receives, so
//! tests can read validation links, codes and reminders. Shared with federation-tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One received email.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    /// The decoded text body.
    pub body: String,
}

pub struct SmtpSink {
    pub port: u16,
    mails: Arc<parking_lot::Mutex<Vec<Mail>>>,
    arrived: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(data: &str, to: Vec<String>) -> Mail {
    let (head, body) = data.split_once("\r\n\r\n").unwrap_or((data, ""));
    // Unfold continuation lines.
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let encoding = header("Content-Transfer-Encoding").to_ascii_lowercase();
    let body = match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap_or_default(),
            )
            .into_owned()
        }
        "quoted-printable" => decode_qp(body),
        _ => body.to_owned(),
    };
    Mail {
        to,
        subject: header("Subject"),
        body: body.replace("\r\n", "\n"),
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    mails: Arc<parking_lot::Mutex<Vec<Mail>>>,
    arrived: Arc<tokio::sync::Notify>,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink ESMTP\r\n").await?;
    let mut to = vec![];
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            w.write_all(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .await?;
        } else if cmd.starts_with("HELO")
            || cmd.starts_with("MAIL FROM")
            || cmd.starts_with("RSET")
            || cmd.starts_with("NOOP")
        {
            w.write_all(b"250 OK\r\n").await?;
        } else if cmd.starts_with("RCPT TO") {
            let addr = line.trim_end()[8..].trim().trim_start_matches('<');
            let addr = addr.split('>').next().unwrap_or_default().to_owned();
            to.push(addr);
            w.write_all(b"250 OK\r\n").await?;
        } else if cmd == "DATA" {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            mails.lock().push(parse(&data, std::mem::take(&mut to)));
            arrived.notify_waiters();
            w.write_all(b"250 queued\r\n").await?;
        } else if cmd == "QUIT" {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"502 unknown\r\n").await?;
        }
    }
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<parking_lot::Mutex<Vec<Mail>>> = Default::default();
        let arrived: Arc<tokio::sync::Notify> = Default::default();
        let (m, a) = (mails.clone(), arrived.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (m, a) = (m.clone(), a.clone());
                tokio::spawn(async move {
                    let _ = session(stream, m, a).await;
                });
            }
        });
        Self {
            port,
            mails,
            arrived,
            task,
        }
    }

    /// Points a server's `[email]` section at this sink.
    pub fn configure(&self, email: &mut palabre::config::EmailConfig) {
        email.smtp_host = Some("127.0.0.1".into());
        email.smtp_port = self.port;
        email.smtp_security = palabre::config::SmtpSecurity::None;
        email.from = "Tchap <noreply@tchap.test>".into();
    }

    /// Every email received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().clone()
    }

    /// Emails received so far for one address.
    pub fn mails_to(&self, address: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .collect()
    }

    /// Waits (up to 10 s) until `address` has received more than `already` emails, and returns
    /// the newest one.
    pub async fn wait_for(&self, address: &str, already: usize) -> Mail {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            let got = self.mails_to(address);
            if got.len() > already {
                return got.last().cloned().unwrap();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no email for {address} within 10 s (got {})", got.len());
            }
        }
    }
}

/// The first `http…` link in a text, up to the next whitespace.
pub fn link_in(body: &str) -> Option<String> {
    let start = body.find("http")?;
    Some(body[start..].split_whitespace().next()?.to_owned())
}

/// The first run of exactly `n` digits in a text (a validation code).
pub fn code_in(body: &str, n: usize) -> Option<String> {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == n)
        .map(str::to_owned)
}
