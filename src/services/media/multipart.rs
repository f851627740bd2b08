//! A streaming reader of the `multipart/mixed` answers of the federation media endpoints
//! (RFC 2046): part headers and the small JSON part are read whole (bounded), the media part is
//! handed on as a stream of chunks, so a large file never sits in memory.

use std::pin::Pin;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};

/// Largest header block of a part, and largest preamble before the first boundary.
const MAX_HEADERS: usize = 16 * 1024;
/// Most transport padding (spaces, tabs) after a boundary.
const MAX_PADDING: usize = 256;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// The boundary of a `multipart/mixed; boundary=…` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while from + needle.len() <= hay.len() {
        let i = from + hay[from..].iter().position(|b| *b == first)?;
        if hay.len() - i < needle.len() {
            return None;
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// A part's headers, names lower-cased.
#[derive(Debug, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct MultipartReader {
    stream: ByteStream,
    buf: Vec<u8>,
    /// `\r\n--boundary`
    delimiter: Vec<u8>,
    eof: bool,
}

impl MultipartReader {
    pub fn new(stream: ByteStream, boundary: &str) -> Self {
        Self {
            stream,
            // The first boundary has no line break before it: one is supplied so that every
            // delimiter looks the same.
            buf: b"\r\n".to_vec(),
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            eof: false,
        }
    }

    /// Reads one more chunk into the buffer; false at the end of the body.
    async fn fill(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        match self.stream.next().await {
            Some(Ok(chunk)) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// Reads until the buffer holds at least `n` bytes.
    async fn need(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err("truncated multipart body".into());
            }
        }
        Ok(())
    }

    /// After a delimiter: `--` closes the body, a line break opens the next part.
    async fn after_delimiter(&mut self) -> Result<bool, String> {
        self.need(2).await?;
        let more = match &self.buf[..2] {
            b"--" => false,
            b"\r\n" => true,
            _ => {
                // Transport padding (spaces, tabs) before the line break is allowed. Every
                // limit here is on a position, never on how much happens to be buffered, so
                // that an answer is taken or refused alike however the network cut it.
                let end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    if self.buf.len() > MAX_PADDING + 2 || !self.fill().await? {
                        return Err("malformed multipart boundary".into());
                    }
                };
                if end > MAX_PADDING || !self.buf[..end].iter().all(|b| *b == b' ' || *b == b'\t') {
                    return Err("malformed multipart boundary".into());
                }
                self.buf.drain(..end);
                true
            }
        };
        self.buf.drain(..2);
        Ok(more)
    }

    /// Skips the preamble up to the first part; false if the body has no part.
    pub async fn start(&mut self) -> Result<bool, String> {
        let at = loop {
            if let Some(i) = find(&self.buf, &self.delimiter) {
                break i;
            }
            if self.buf.len() > MAX_HEADERS + self.delimiter.len() || !self.fill().await? {
                return Err("no multipart boundary".into());
            }
        };
        if at > MAX_HEADERS {
            return Err("no multipart boundary".into());
        }
        self.buf.drain(..at + self.delimiter.len());
        self.after_delimiter().await
    }

    /// The headers of the part that starts here.
    pub async fn headers(&mut self) -> Result<Headers, String> {
        self.need(2).await?;
        if self.buf.starts_with(b"\r\n") {
            self.buf.drain(..2);
            return Ok(Headers::default());
        }
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEADERS + 4 || !self.fill().await? {
                return Err("multipart headers too long or truncated".into());
            }
        };
        if end > MAX_HEADERS {
            return Err("multipart headers too long".into());
        }
        let text = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| "multipart headers are not UTF-8".to_owned())?;
        let mut headers = vec![];
        for line in text.split("\r\n") {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| "malformed multipart header".to_owned())?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        self.buf.drain(..end + 4);
        Ok(Headers(headers))
    }

    /// The whole body of the current part (at most `max` bytes); then whether another part
    /// follows.
    pub async fn read_part(&mut self, max: usize) -> Result<(Vec<u8>, bool), String> {
        let at = loop {
            if let Some(i) = find(&self.buf, &self.delimiter) {
                break i;
            }
            if self.buf.len() > max + self.delimiter.len() || !self.fill().await? {
                return Err("multipart part too large or truncated".into());
            }
        };
        if at > max {
            return Err("multipart part too large".into());
        }
        let body: Vec<u8> = self.buf.drain(..at).collect();
        self.buf.drain(..self.delimiter.len());
        let more = self.after_delimiter().await?;
        Ok((body, more))
    }

    /// The body of the current part as a stream of chunks, ending at the next boundary. A
    /// body that stops before the boundary ends the stream with an error (a truncated file is
    /// never taken for a whole one). What follows the part is not read.
    pub fn into_part_stream(self) -> ByteStream {
        Box::pin(futures_util::stream::unfold(
            Some(self),
            |state| async move {
                let mut r = state?;
                loop {
                    if let Some(i) = find(&r.buf, &r.delimiter) {
                        if i == 0 {
                            return None;
                        }
                        // The delimiter stays at the front: the next turn ends the stream.
                        let chunk: Vec<u8> = r.buf.drain(..i).collect();
                        return Some((Ok(Bytes::from(chunk)), Some(r)));
                    }
                    // Everything but a tail that could begin a delimiter can go.
                    let keep = r.delimiter.len() - 1;
                    if r.buf.len() > keep + 64 * 1024 {
                        let n = r.buf.len() - keep;
                        let chunk: Vec<u8> = r.buf.drain(..n).collect();
                        return Some((Ok(Bytes::from(chunk)), Some(r)));
                    }
                    match r.fill().await {
                        Ok(true) => {}
                        Ok(false) => {
                            return Some((Err("truncated multipart body".to_owned()), None))
                        }
                        Err(e) => return Some((Err(e), None)),
                    }
                }
            },
        ))
    }
}

/// The file name of a `Content-Disposition` value: `filename*=utf-8''…` (RFC 5987) first, else
/// `filename="…"`.
pub fn disposition_filename(value: &str) -> Option<String> {
    let mut plain = None;
    for param in value.split(';').skip(1) {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim();
        if k == "filename*" {
            let (charset, rest) = v.split_once('\'')?;
            let (_, encoded) = rest.split_once('\'')?;
            if charset.eq_ignore_ascii_case("utf-8") {
                if let Ok(s) = percent_encoding::percent_decode_str(encoded).decode_utf8() {
                    return Some(s.into_owned());
                }
            }
        } else if k == "filename" {
            plain = Some(v.trim_matches('"').replace("\\\"", "\""));
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: &[&[u8]], boundary: &str) -> MultipartReader {
        let owned: Vec<Result<Bytes, String>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        MultipartReader::new(Box::pin(futures_util::stream::iter(owned)), boundary)
    }

    async fn collect(s: ByteStream) -> Result<Vec<u8>, String> {
        let mut out = vec![];
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn reads_parts_across_chunk_edges() {
        let body = b"preamble\r\n--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\n\
Content-Type: text/plain\r\nContent-Disposition: inline; filename*=utf-8''a%20b.txt\r\n\r\n\
hello\r\n--xy not yet\r\n--xyz--\r\n";
        // Every split point, byte by byte included.
        for size in [1usize, 2, 3, 7, 16, body.len()] {
            let chunks: Vec<&[u8]> = body.chunks(size).collect();
            let mut r = reader(&chunks, "xyz");
            assert!(r.start().await.unwrap());
            let h = r.headers().await.unwrap();
            assert_eq!(h.get("content-type"), Some("application/json"));
            let (json, more) = r.read_part(1024).await.unwrap();
            assert_eq!((json.as_slice(), more), (&b"{}"[..], true));
            let h = r.headers().await.unwrap();
            assert_eq!(
                disposition_filename(h.get("content-disposition").unwrap()).as_deref(),
                Some("a b.txt")
            );
            let data = collect(r.into_part_stream()).await.unwrap();
            assert_eq!(data, b"hello\r\n--xy not yet", "chunk size {size}");
        }
    }

    #[tokio::test]
    async fn truncated_part_is_an_error() {
        let mut r = reader(&[b"--b\r\n\r\n{}\r\n--b\r\n\r\nabc"], "b");
        assert!(r.start().await.unwrap());
        r.headers().await.unwrap();
        r.read_part(10).await.unwrap();
        r.headers().await.unwrap();
        assert!(collect(r.into_part_stream()).await.is_err());
    }

    /// Reads a two-part answer cut into chunks of `size` bytes: its headers, or the error.
    async fn second_headers(body: &[u8], size: usize) -> Result<Headers, String> {
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        let mut r = reader(&chunks, "b");
        r.start().await?;
        r.headers().await?;
        r.read_part(1024).await?;
        r.headers().await
    }

    /// The `multipart` fuzz target's property that chunking changes nothing failed on these
    /// bodies (written for it): the size limits were on what was buffered, so a body in one
    /// chunk passed them and the same body in small chunks did not.
    #[tokio::test]
    async fn limits_do_not_depend_on_chunks() {
        let padded = [
            &b"--b"[..],
            &[b' '; MAX_PADDING + 40],
            b"\r\n\r\n{}\r\n--b\r\n\r\nfile\r\n--b--",
        ]
        .concat();
        let long_header = [
            &b"--b\r\n\r\n{}\r\n--b\r\nX-Long: "[..],
            &[b'a'; MAX_HEADERS + 10],
            b"\r\n\r\nfile\r\n--b--",
        ]
        .concat();
        let long_preamble = [&[b'p'; MAX_HEADERS + 10][..], b"\r\n--b\r\n\r\n{}\r\n--b--"].concat();
        for size in [1, 7, 17, 4096, usize::MAX] {
            for body in [&padded, &long_header] {
                assert!(
                    second_headers(body, size).await.is_err(),
                    "chunks of {size}"
                );
            }
            let chunks: Vec<&[u8]> = long_preamble.chunks(size).collect();
            assert!(
                reader(&chunks, "b").start().await.is_err(),
                "chunks of {size}"
            );
        }
        // At the limits, taken alike.
        let padded = [
            &b"--b"[..],
            &[b'\t'; MAX_PADDING],
            b"\r\n\r\n{}\r\n--b\r\n\r\nfile\r\n--b--",
        ]
        .concat();
        let long_header = [
            &b"--b\r\n\r\n{}\r\n--b\r\nX-Long: "[..],
            &[b'a'; MAX_HEADERS - 8],
            b"\r\n\r\nfile\r\n--b--",
        ]
        .concat();
        for size in [1, 7, 17, 4096, usize::MAX] {
            for body in [&padded, &long_header] {
                assert!(second_headers(body, size).await.is_ok(), "chunks of {size}");
            }
        }
    }

    #[test]
    fn boundaries_and_filenames() {
        assert_eq!(
            boundary("multipart/mixed; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(
            disposition_filename("attachment; filename=\"x.pdf\"").as_deref(),
            Some("x.pdf")
        );
        assert_eq!(disposition_filename("inline"), None);
    }
}
