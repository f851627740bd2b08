//! URL previews (`/preview_url`): the server fetches a page for a user, so it must never be a
//! way into the private network. Every hop's host is resolved here and refused if any address is
//! non-public (unless allow-listed); the connection then goes to exactly those addresses (no
//! second resolution to rebind), redirects are followed by hand under the same checks, and size
//! and time are bounded.

use crate::services::media::MediaFace;
use std::{collections::HashMap, net::SocketAddr, time::Duration};

use reqwest::Url;
use ruma::UserId;
use serde_json::{json, Map, Value};

use crate::{
    services::outbound::{read_capped, IpPolicy, ReadError},
    util, Error, Result,
};

const MAX_REDIRECTS: usize = 5;
const CACHE_MS: i64 = 60 * 60 * 1000;
const CACHE_ENTRIES: usize = 2_000;

/// Minimal HTML entity decoding for meta values.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

/// The attributes of a tag's inside (`name="v" other='w' bare`).
fn attributes(tag: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let b = tag.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                i += 1;
                let vs = i;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = tag[vs..i].to_owned();
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = tag[vs..i].to_owned();
            }
        }
        if !name.is_empty() {
            out.entry(name).or_insert(value);
        }
    }
    out
}

/// Open Graph data of a page: `og:*` meta properties, with `<title>` and the description meta
/// as fallbacks.
pub fn open_graph(html: &str) -> Map<String, Value> {
    let lower = html.to_ascii_lowercase();
    let mut og = Map::new();
    let mut description = None;
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("<meta") {
        let start = pos + found + 5;
        let Some(end) = lower[start..].find('>') else {
            break;
        };
        let attrs = attributes(&html[start..start + end]);
        pos = start + end;
        let content = attrs.get("content").map(|c| unescape(c));
        let key = attrs
            .get("property")
            .or_else(|| attrs.get("name"))
            .map(|k| k.to_ascii_lowercase());
        match (key.as_deref(), content) {
            (Some(k), Some(c)) if k.starts_with("og:") && !og.contains_key(k) => {
                og.insert(k.to_owned(), json!(c));
            }
            (Some("description"), Some(c)) => description = Some(c),
            _ => {}
        }
    }
    if !og.contains_key("og:title") {
        if let Some(t) = lower.find("<title") {
            if let Some(gt) = lower[t..].find('>') {
                let from = t + gt + 1;
                if let Some(close) = lower[from..].find("</title") {
                    let title = unescape(&html[from..from + close]);
                    if !title.is_empty() {
                        og.insert("og:title".into(), json!(title));
                    }
                }
            }
        }
    }
    if let (false, Some(d)) = (og.contains_key("og:description"), description) {
        og.insert("og:description".into(), json!(d));
    }
    og
}

struct Fetched {
    content_type: String,
    body: Vec<u8>,
}

/// How `open_public` fetches: which private ranges are allowed, the time bound, extra trusted
/// certificate authorities.
pub struct PublicFetch<'a> {
    pub policy: &'a IpPolicy,
    pub timeout: Duration,
    pub extra_roots: &'a [reqwest::Certificate],
    pub user_agent: &'static str,
}

/// GET with the address checks and manual redirects: the response of the last hop, which
/// answered a success.
pub async fn open_public(mut url: Url, how: &PublicFetch<'_>) -> Result<reqwest::Response> {
    let blocked = |m: &str| Error::forbidden(m.to_owned());
    for _ in 0..=MAX_REDIRECTS {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::invalid_param(
                "Only http and https URLs can be fetched",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| Error::invalid_param("URL without a host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| Error::not_found("Host not found"))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::not_found("Host not found"));
        }
        if addrs.iter().any(|a| !how.policy.allows(a.ip())) {
            return Err(blocked("This address may not be fetched"));
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(how.timeout)
            .resolve_to_addrs(&host, &addrs)
            .user_agent(how.user_agent);
        for cert in how.extra_roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        let client = builder.build().map_err(|e| Error::unknown(e.to_string()))?;
        let resp = client.get(url.clone()).send().await.map_err(|e| {
            tracing::info!(error = %e, "public fetch failed");
            bad_gateway("Fetch failed".into())
        })?;
        if resp.status().is_redirection() {
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| bad_gateway("Redirect without a location".into()))?;
            url = next;
            continue;
        }
        if !resp.status().is_success() {
            return Err(bad_gateway(format!("The page answered {}", resp.status())));
        }
        return Ok(resp);
    }
    Err(bad_gateway("Too many redirects".into()))
}

impl MediaFace<'_> {
    /// GET with the address checks, manual redirects, and the size bound.
    async fn fetch_public(self, url: Url) -> Result<Fetched> {
        let cfg = &self.config.media.url_preview;
        let how = PublicFetch {
            policy: &self.outbound.previews,
            timeout: Duration::from_millis(cfg.timeout_ms),
            extra_roots: &[],
            user_agent: "Palabre URL preview",
        };
        let resp = open_public(url, &how).await.map_err(|e| {
            if e.status == axum::http::StatusCode::FORBIDDEN {
                Error::forbidden("This address may not be previewed")
            } else {
                e
            }
        })?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let max = usize::try_from(cfg.max_bytes).unwrap_or(usize::MAX);
        let body = read_capped(resp, max).await.map_err(|e| match e {
            ReadError::TooLarge => Error::too_large("The page is too large to preview"),
            ReadError::Failed(e) => {
                tracing::info!(error = %e, "preview fetch failed");
                bad_gateway("Fetch failed".into())
            }
        })?;
        Ok(Fetched { content_type, body })
    }

    /// Stores a fetched image as the requester's media; its Open Graph image fields.
    async fn preview_image(self, user: &UserId, f: Fetched) -> Result<Map<String, Value>> {
        let size = f.body.len();
        let dims = image::ImageReader::new(std::io::Cursor::new(&f.body))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
            axum::body::Bytes::from(f.body),
        )]);
        let mxc = self
            .upload_media(user, Some(&f.content_type), None, Some(size as u64), stream)
            .await?;
        let mut og = Map::new();
        og.insert("og:image".into(), json!(mxc));
        og.insert("og:image:type".into(), json!(f.content_type));
        og.insert("matrix:image:size".into(), json!(size));
        if let Some((w, h)) = dims {
            og.insert("og:image:width".into(), json!(w));
            og.insert("og:image:height".into(), json!(h));
        }
        Ok(og)
    }

    /// `GET /preview_url`: Open Graph data of a page (or of an image), cached for an hour.
    pub async fn preview_url(self, user: &UserId, url: &str) -> Result<Value> {
        if !self.config.media.url_preview.enabled {
            return Err(Error::unrecognized("URL previews are disabled"));
        }
        let parsed = Url::parse(url).map_err(|_| Error::invalid_param("Invalid URL"))?;
        let now = util::now_ms();
        if let Some((at, v)) = self.preview_cache.lock().get(url) {
            if now - at < CACHE_MS {
                return Ok(v.clone());
            }
        }
        let page = self.fetch_public(parsed.clone()).await?;
        let og = if page.content_type.starts_with("image/") {
            self.preview_image(user, page).await?
        } else if page.content_type.starts_with("text/html")
            || page.content_type.starts_with("application/xhtml")
        {
            let html = String::from_utf8_lossy(&page.body);
            let mut og = open_graph(&html);
            if let Some(img) = og
                .get("og:image")
                .and_then(Value::as_str)
                .map(str::to_owned)
            {
                og.remove("og:image");
                if let Ok(img_url) = parsed.join(&img) {
                    match self.fetch_public(img_url).await {
                        Ok(f) if f.content_type.starts_with("image/") => {
                            og.extend(self.preview_image(user, f).await?);
                        }
                        _ => {}
                    }
                }
            }
            og
        } else {
            Map::new()
        };
        let v = Value::Object(og);
        let mut cache = self.preview_cache.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (at, _)| now - *at < CACHE_MS);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(url.to_owned(), (now, v.clone()));
        Ok(v)
    }
}

fn bad_gateway(msg: String) -> Error {
    Error::bad_gateway(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_open_graph() {
        let og = open_graph(
            r#"<html><head><TITLE>Fallback &amp; co</TITLE>
            <meta property="og:description" content='Une "description"'>
            <meta name=description content="ignored">
            <meta property="og:image" content="/img.png" /></head></html>"#,
        );
        assert_eq!(og["og:title"], "Fallback & co");
        assert_eq!(og["og:description"], "Une \"description\"");
        assert_eq!(og["og:image"], "/img.png");
    }
}
