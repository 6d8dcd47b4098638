//! Downloading one dataset file: into a temporary file next to its final place, fsynced, checked
//! against the SHA-256 of its published decompressed content, then renamed into place, so that a
//! failed or interrupted download never leaves a file under the final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::idx;

/// The largest download accepted: the biggest file, train-images, is 47 MB even decompressed.
const MAX_BYTES: u64 = 64 << 20;

/// Downloads `url` into `dir` (created if needed) as `stem.gz`, or as `stem` if the server sent
/// it decompressed, and returns that path. Fails, leaving nothing behind, unless the SHA-256 of
/// the decompressed content is `sha256` (lowercase hex).
pub(crate) fn download(url: &str, dir: &Path, stem: &str, sha256: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = temp_path(dir, stem);
    let placed = fetch(url, &temp).and_then(|()| verify(&temp, sha256)).and_then(|gzipped| {
        let dest = dir.join(if gzipped { format!("{stem}.gz") } else { stem.to_string() });
        fs::rename(&temp, &dest)
            .and_then(|()| sync_dir(dir))
            .with_context(|| format!("cannot move {} to {}", temp.display(), dest.display()))?;
        Ok(dest)
    });
    if placed.is_err() {
        // Best effort: the temporary name is never read as data, whether or not this works.
        let _ = fs::remove_file(&temp);
    }
    placed
}

/// A name in `dir` that no other download, in this process or another, uses at the same time.
fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{stem}.{}-{n}.part", std::process::id()))
}

/// Short timeouts, so that an offline machine gives up within seconds; no total limit on the body,
/// only on each read, so that a slow but live connection can finish.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(Duration::from_secs(4)))
        .timeout_connect(Some(Duration::from_secs(4)))
        .timeout_recv_response(Some(Duration::from_secs(8)))
        .timeout_per_read(Some(Duration::from_secs(15)))
        .user_agent(concat!("gan-gpu/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Writes the body of `url` to a new file `temp` and fsyncs it, with a progress bar on stderr.
fn fetch(url: &str, temp: &Path) -> Result<()> {
    eprintln!("downloading {url}");
    let response = agent().get(url).call()?;
    let body = response.into_body();
    let bar = match body.content_length() {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )?
            .progress_chars("=> "),
        ),
        None => ProgressBar::no_length()
            .with_style(ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")?),
    };
    let bar = bar.with_message(url.rsplit('/').next().unwrap_or(url).to_string());
    let mut reader = bar.wrap_read(body.into_with_config().limit(MAX_BYTES).reader());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let mut writer = BufWriter::new(file);
    let copied = io::copy(&mut reader, &mut writer);
    bar.finish_and_clear();
    copied.context("download interrupted")?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    file.sync_all().with_context(|| format!("cannot write {}", temp.display()))
}

/// Checks the SHA-256 of the decompressed content of `path`; says whether the file is gzipped.
fn verify(path: &Path, sha256: &str) -> Result<bool> {
    let content = idx::decode_file(path)?;
    let found = super::sha256_hex(&content);
    if found != sha256 {
        bail!(
            "checksum mismatch: SHA-256 of the {} bytes of (decompressed) content is {found}, the published file's is {sha256}",
            content.len()
        );
    }
    let mut magic = [0u8; 2];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    read.with_context(|| format!("cannot read {}", path.display()))?;
    Ok(magic == [0x1f, 0x8b])
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes the rename itself durable; directories cannot be opened for syncing on Windows.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
