//! Thumbnails: generated once per (content, size, method) at the sizes the spec suggests, and
//! cached as content-addressed files. Images whose header announces more pixels than
//! `max_image_pixels` are never decoded. At most `Thumbnailer::limit` images are decoded at
//! once, and concurrent requests for one thumbnail share a single generation.

use crate::services::media::MediaFace;
use std::{
    collections::HashMap,
    io::Cursor,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use image::{imageops::FilterType, DynamicImage, ImageFormat, ImageReader, Limits};

use super::Download;
use crate::{services::Services, store::media::ThumbnailRow, Error, Result};

/// (width, height, method) of the thumbnails served.
const SIZES: &[(u32, u32, Method)] = &[
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// Largest source file decoded.
const MAX_SOURCE_BYTES: u64 = 50 * 1024 * 1024;
/// Decoder allocation ceiling.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// Most images decoded at once, whatever the number of cores: each decode may hold up to
/// `MAX_DECODE_ALLOC` and a core.
const MAX_CONCURRENT_DECODES: usize = 4;

/// A generation in flight, awaited by every request for that thumbnail.
type Job = Shared<BoxFuture<'static, Result<ThumbnailRow>>>;
/// (source SHA-256, width, height, method).
type JobKey = (String, u32, u32, Method);

/// The thumbnail generator's shared state: the decode bound, the generations in flight and
/// counters (read by the tests and useful in a debugger).
pub struct Thumbnailer {
    decoding: tokio::sync::Semaphore,
    limit: usize,
    jobs: parking_lot::Mutex<HashMap<JobKey, Job>>,
    decodes: AtomicU64,
    active: AtomicUsize,
    peak: AtomicUsize,
}

impl Default for Thumbnailer {
    fn default() -> Self {
        let limit = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_CONCURRENT_DECODES);
        Self {
            decoding: tokio::sync::Semaphore::new(limit),
            limit,
            jobs: Default::default(),
            decodes: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }
}

impl Thumbnailer {
    /// Most decodes run at once: the number of cores, between 1 and `MAX_CONCURRENT_DECODES`.
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Images decoded since start.
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }
    /// The most decodes seen running at once since start.
    pub fn peak_concurrent(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Takes a finished generation out of the in-flight map, however its task ends.
struct LeaveJobs<'a>(&'a Services, &'a JobKey);

impl Drop for LeaveJobs<'_> {
    fn drop(&mut self) {
        self.0.thumbnailer.jobs.lock().remove(self.1);
    }
}

/// Counts one running decode for as long as it lives.
struct Decoding<'a>(&'a Thumbnailer);

impl<'a> Decoding<'a> {
    fn start(t: &'a Thumbnailer) -> Self {
        t.decodes.fetch_add(1, Ordering::Relaxed);
        let now = t.active.fetch_add(1, Ordering::SeqCst) + 1;
        t.peak.fetch_max(now, Ordering::SeqCst);
        Self(t)
    }
}

impl Drop for Decoding<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Crop,
    Scale,
}

impl Method {
    pub fn parse(s: Option<&str>) -> Result<Self> {
        match s {
            None | Some("scale") => Ok(Self::Scale),
            Some("crop") => Ok(Self::Crop),
            Some(_) => Err(Error::invalid_param("method must be crop or scale")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// The served size for a request: the smallest of that method at least as large as asked,
/// else the largest of that method.
pub fn pick(width: u32, height: u32, method: Method) -> (u32, u32) {
    let same: Vec<(u32, u32)> = SIZES
        .iter()
        .filter(|s| s.2 == method)
        .map(|s| (s.0, s.1))
        .collect();
    same.iter()
        .copied()
        .find(|(w, h)| *w >= width && *h >= height)
        .or_else(|| same.last().copied())
        .unwrap_or((width, height))
}

/// Decodes, resizes and encodes (blocking: run on the blocking pool).
fn render(
    path: &std::path::Path,
    width: u32,
    height: u32,
    method: Method,
    max_pixels: u64,
) -> Result<(Vec<u8>, &'static str)> {
    let cannot = |e: String| Error::bad_request(e);
    let open = || {
        ImageReader::open(path)
            .map_err(|e| cannot(e.to_string()))?
            .with_guessed_format()
            .map_err(|e| cannot(e.to_string()))
    };
    let reader = open()?;
    let format = reader
        .format()
        .filter(|f| {
            matches!(
                f,
                ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP
            )
        })
        .ok_or_else(|| cannot("Cannot thumbnail this content".into()))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| cannot(format!("Unreadable image: {e}")))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(Error::too_large("Image too large to thumbnail"));
    }
    let mut reader = open()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| cannot(format!("Unreadable image: {e}")))?;
    let out: DynamicImage = match method {
        Method::Crop => img.resize_to_fill(width, height, FilterType::Triangle),
        // Scaling never enlarges.
        Method::Scale if w <= width && h <= height => img,
        Method::Scale => img.resize(width, height, FilterType::Triangle),
    };
    let mut buf = Cursor::new(Vec::new());
    let content_type = if format == ImageFormat::Jpeg {
        out.to_rgb8()
            .write_to(&mut buf, ImageFormat::Jpeg)
            .map_err(|e| Error::unknown(e.to_string()))?;
        "image/jpeg"
    } else {
        out.write_to(&mut buf, ImageFormat::Png)
            .map_err(|e| Error::unknown(e.to_string()))?;
        "image/png"
    };
    Ok((buf.into_inner(), content_type))
}

impl MediaFace<'_> {
    /// A thumbnail of a media (generated on first request, then cached). Another server's
    /// media: see `remote_thumbnail`.
    #[allow(clippy::too_many_arguments)]
    pub async fn thumbnail(
        self,
        server: &str,
        media_id: &str,
        width: u32,
        height: u32,
        method: Method,
        timeout_ms: Option<u64>,
        legacy: bool,
    ) -> Result<Download> {
        if width == 0 || height == 0 {
            return Err(Error::invalid_param("width and height must be positive"));
        }
        if server != self.server_name.as_str() && !legacy {
            let origin =
                ruma::ServerName::parse(server).map_err(|_| Error::not_found("Media not found"))?;
            return self
                .remote_thumbnail(&origin, media_id, width, height, method, timeout_ms)
                .await;
        }
        let row = self.media_row(server, media_id, timeout_ms, legacy).await?;
        let (Some(size), Some(sha)) = (row.size, row.sha256) else {
            return Err(Error::not_found("Media not found"));
        };
        self.thumbnail_of(&sha, size as u64, width, height, method)
            .await
    }

    /// The thumbnail of stored content (by its SHA-256), generated on first request.
    pub(super) async fn thumbnail_of(
        self,
        sha: &str,
        size: u64,
        width: u32,
        height: u32,
        method: Method,
    ) -> Result<Download> {
        let (tw, th) = pick(width, height, method);
        if let Some(t) = self
            .db
            .get_thumbnail(sha, tw.into(), th.into(), method.as_str())
            .await?
        {
            return self
                .open_media(&t.sha256, t.size as u64, t.content_type, None)
                .await;
        }
        if size > MAX_SOURCE_BYTES {
            return Err(Error::too_large("Image too large to thumbnail"));
        }
        let t = self.generation((sha.to_owned(), tw, th, method))?.await?;
        self.open_media(&t.sha256, t.size as u64, t.content_type, None)
            .await
    }

    /// The generation of one thumbnail: the one in flight, or a new one. It runs in its own
    /// task, so a request that goes away does not cancel it for the others waiting.
    fn generation(self, key: JobKey) -> Result<Job> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let mut jobs = self.thumbnailer.jobs.lock();
        if let Some(job) = jobs.get(&key) {
            return Ok(job.clone());
        }
        let k = key.clone();
        // The task removes its own entry once the row is stored (or it failed, or panicked):
        // a later request finds either the job or the row. (Not before the insert below: the
        // lock.)
        let task = tokio::spawn(async move {
            let _leave = LeaveJobs(&me, &k);
            me.media().generate(&k).await
        });
        let job = task
            .map(|r| r.unwrap_or_else(|e| Err(Error::unknown(format!("thumbnailer: {e}")))))
            .boxed()
            .shared();
        jobs.insert(key, job.clone());
        Ok(job)
    }

    /// Decodes (under the bound), encodes and stores one thumbnail.
    async fn generate(self, (sha, tw, th, method): &JobKey) -> Result<ThumbnailRow> {
        let (tw, th, method) = (*tw, *th, *method);
        let _permit = self
            .thumbnailer
            .decoding
            .acquire()
            .await
            .map_err(|_| Error::unknown("Server shutting down"))?;
        // Another process sharing the database may have made it meanwhile.
        if let Some(t) = self
            .db
            .get_thumbnail(sha, tw.into(), th.into(), method.as_str())
            .await?
        {
            return Ok(t);
        }
        let path = self.media_path(sha);
        let max_pixels = self.config.media.max_image_pixels;
        let (bytes, content_type) = {
            let _counted = Decoding::start(&self.thumbnailer);
            tokio::task::spawn_blocking(move || render(&path, tw, th, method, max_pixels))
                .await
                .map_err(|e| Error::unknown(format!("thumbnailer: {e}")))??
        };
        let thumb_sha = self.keep_bytes(&bytes).await?;
        let t = ThumbnailRow {
            content_type: content_type.to_owned(),
            sha256: thumb_sha,
            size: bytes.len() as i64,
        };
        self.db
            .put_thumbnail(sha, tw.into(), th.into(), method.as_str(), &t)
            .await?;
        Ok(t)
    }
}
