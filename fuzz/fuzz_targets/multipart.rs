//! The `multipart/mixed` answers of the federation media endpoints and the media headers: the
//! boundary of a content type, the streaming reader (preamble, part headers, the JSON part,
//! the file part as a stream) read as the remote media client reads it, and the file name of a
//! `Content-Disposition`. The reader must give the same parts however the body is cut into
//! chunks, and a file part never holds a delimiter.
//!
//! Input: one byte giving the chunk size, the `Content-Type` value, a line break, the body.

#![no_main]

use axum::body::Bytes;
use futures_util::{FutureExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use palabre::services::media::{
    content_disposition, inline_allowed,
    multipart::{boundary, disposition_filename, ByteStream, MultipartReader},
};

/// Largest metadata part read, as the remote media client reads it.
const MAX_JSON: usize = 64 * 1024;

/// What the remote media client takes from an answer: the JSON part, then the file part's
/// location or content type, file name, length and bytes.
#[derive(Debug)]
struct Answer {
    meta: Vec<u8>,
    location: Option<String>,
    content_type: Option<String>,
    filename: Option<String>,
    length: Option<u64>,
    file: Result<Vec<u8>, String>,
}

/// Runs a future that never waits (the body is all in memory).
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    f.now_or_never().expect("an in-memory body never waits")
}

fn read(body: &[u8], chunk: usize, boundary: &str) -> Result<Answer, String> {
    let chunks: Vec<Result<Bytes, String>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream: ByteStream = Box::pin(futures_util::stream::iter(chunks));
    let mut r = MultipartReader::new(stream, boundary);
    if !now(r.start())? {
        return Err("empty".into());
    }
    now(r.headers())?;
    let (meta, more) = now(r.read_part(MAX_JSON))?;
    if !more {
        return Err("no file part".into());
    }
    let h = now(r.headers())?;
    let location = h.get("location").map(str::to_owned);
    let content_type = h.get("content-type").map(str::to_owned);
    let filename = h.get("content-disposition").and_then(disposition_filename);
    let length = h.get("content-length").and_then(|l| l.parse().ok());
    let mut s = r.into_part_stream();
    let mut file = Ok(vec![]);
    while let Some(c) = now(s.next()) {
        match (c, &mut file) {
            (Ok(c), Ok(f)) => f.extend_from_slice(&c),
            (Err(e), _) => {
                file = Err(e);
                break;
            }
            (Ok(_), Err(_)) => unreachable!(),
        }
    }
    Ok(Answer {
        meta,
        location,
        content_type,
        filename,
        length,
        file,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, data)) = data.split_first() else {
        return;
    };
    let (head, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(content_type) = std::str::from_utf8(head) else {
        return;
    };

    // Header values as a client or a server sends them.
    let _ = inline_allowed(content_type);
    let _ = disposition_filename(content_type);
    if let Ok(name) = std::str::from_utf8(body) {
        // What this server writes, it reads back (the same file name, for a remote copy),
        // and it is always a valid header value (the download handler drops one that is not).
        let served = content_disposition(content_type, Some(name));
        assert_eq!(disposition_filename(&served).as_deref(), Some(name));
        assert!(http::HeaderValue::from_str(&served).is_ok());
    }

    let Some(b) = boundary(content_type) else {
        return;
    };
    // However the body comes cut, the same answer (or a refusal either way: the messages may
    // differ).
    let chunk = usize::from(size) % 17 + 1;
    let whole = read(body, body.len().max(1), &b);
    let chunked = read(body, chunk, &b);
    match (&whole, &chunked) {
        (Ok(w), Ok(c)) => {
            assert_eq!(w.file.is_ok(), c.file.is_ok(), "chunks of {chunk}");
            let bytes = |a: &Answer| a.file.as_ref().ok().cloned();
            assert_eq!(
                (
                    &w.meta,
                    &w.location,
                    &w.content_type,
                    &w.filename,
                    w.length,
                    bytes(w)
                ),
                (
                    &c.meta,
                    &c.location,
                    &c.content_type,
                    &c.filename,
                    c.length,
                    bytes(c)
                ),
                "chunks of {chunk}"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("chunks of {chunk}: {whole:?} but {chunked:?}"),
    }
    if let Ok(Answer { file: Ok(file), .. }) = &whole {
        let delimiter = format!("\r\n--{b}");
        assert!(!file
            .windows(delimiter.len())
            .any(|w| w == delimiter.as_bytes()));
    }
});
