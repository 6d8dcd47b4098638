//! Datasets: the IDX reader and writer, the lookup order, downloads from a loopback server, the
//! shipped MNIST subset. The real MNIST files come from GAN_GPU_DATA (default ../shared/data/mnist);
//! nothing here touches the process environment or the internet.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::write::GzEncoder;
use gan_gpu::data::idx::{self, IMAGES_MAGIC, LABELS_MAGIC};
use gan_gpu::data::{DatasetName, Sources, Split, load, load_training_set};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const PIXELS: usize = 28 * 28;

fn mnist_dir() -> PathBuf {
    match std::env::var_os("GAN_GPU_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"),
    }
}

fn real(file: &str) -> PathBuf {
    mnist_dir().join(file)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A synthetic MNIST-shaped split in `dir`: `count` images whose pixels all equal `count`.
fn write_set(dir: &Path, prefix: &str, count: usize, gz: bool) {
    fs::create_dir_all(dir).unwrap();
    let images =
        idx_bytes(IMAGES_MAGIC, &[count as u32, 28, 28], &vec![count as u8; count * PIXELS]);
    let labels = idx_bytes(
        LABELS_MAGIC,
        &[count as u32],
        &(0..count).map(|i| (i % 10) as u8).collect::<Vec<_>>(),
    );
    for (stem, content) in [
        (format!("{prefix}-images-idx3-ubyte"), images),
        (format!("{prefix}-labels-idx1-ubyte"), labels),
    ] {
        if gz {
            fs::write(dir.join(format!("{stem}.gz")), gzip(&content)).unwrap();
        } else {
            fs::write(dir.join(stem), content).unwrap();
        }
    }
}

/// Sources that look only where a test says: no directories, no mirrors.
fn nowhere(tmp: &TempDir) -> Sources {
    Sources {
        data_dir: None,
        env_dir: None,
        cache_dir: None,
        system_dir: tmp.path().join("no-system-dir"),
        mirrors: Some(Vec::new()),
    }
}

fn err_text(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

// ---- IDX files ----

#[test]
fn real_training_files_read_with_known_checksums() {
    let images = idx::read_images(&real("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (60000, 28, 28));
    let content = idx_bytes(IMAGES_MAGIC, &[60000, 28, 28], &images.pixels);
    assert_eq!(
        sha256_hex(&content),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    );

    let labels = idx::read_labels(&real("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.len(), 60000);
    assert!(labels.iter().all(|&l| l < 10));
    let content = idx_bytes(LABELS_MAGIC, &[60000], &labels);
    assert_eq!(
        sha256_hex(&content),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    );
}

#[test]
fn raw_and_gzipped_files_read_the_same() {
    let tmp = TempDir::new().unwrap();
    for stem in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        let gz = fs::read(real(&format!("{stem}.gz"))).unwrap();
        fs::write(tmp.path().join(stem), gunzip(&gz)).unwrap();
    }
    let raw = idx::read_images(&tmp.path().join("t10k-images-idx3-ubyte")).unwrap();
    let gz = idx::read_images(&real("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((raw.count, raw.rows, raw.cols), (10000, 28, 28));
    assert_eq!(raw, gz);
    assert_eq!(
        idx::read_labels(&tmp.path().join("t10k-labels-idx1-ubyte")).unwrap(),
        idx::read_labels(&real("t10k-labels-idx1-ubyte.gz")).unwrap()
    );

    let from_raw = load(
        DatasetName::Mnist,
        Split::Test,
        &Sources { data_dir: Some(tmp.path().into()), ..nowhere(&tmp) },
    )
    .unwrap();
    let from_gz = load(
        DatasetName::Mnist,
        Split::Test,
        &Sources { data_dir: Some(mnist_dir()), ..nowhere(&tmp) },
    )
    .unwrap();
    assert_eq!((from_raw.count, from_raw.rows, from_raw.cols), (10000, 28, 28));
    assert_eq!(from_raw.images, from_gz.images);
    assert_eq!(from_raw.labels, from_gz.labels);
    let t10k_sha = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7";
    assert_eq!(sha256_hex(&idx_bytes(IMAGES_MAGIC, &[10000, 28, 28], &from_raw.images)), t10k_sha);
}

#[test]
fn written_images_read_back_identically() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("samples.idx");
    let pixels: Vec<u8> = (0..3 * 5 * 7).map(|i| (i * 37 % 256) as u8).collect();
    idx::write_images(&path, 3, 5, 7, &pixels).unwrap();
    assert_eq!(fs::read(&path).unwrap(), idx_bytes(IMAGES_MAGIC, &[3, 5, 7], &pixels));
    let back = idx::read_images(&path).unwrap();
    assert_eq!((back.count, back.rows, back.cols), (3, 5, 7));
    assert_eq!(back.pixels, pixels);

    let real_images = idx::read_images(&real("t10k-images-idx3-ubyte.gz")).unwrap();
    let path = tmp.path().join("t10k.idx");
    idx::write_images(&path, real_images.count, 28, 28, &real_images.pixels).unwrap();
    assert_eq!(idx::read_images(&path).unwrap(), real_images);

    let e = err_text(idx::write_images(&tmp.path().join("bad.idx"), 2, 28, 28, &pixels));
    assert!(e.contains("bad.idx") && e.contains("1568 bytes, got 105"), "{e}");
}

#[test]
fn every_corruption_is_an_error_naming_the_file_and_the_fault() {
    let tmp = TempDir::new().unwrap();
    let labels_gz = fs::read(real("t10k-labels-idx1-ubyte.gz")).unwrap();
    let labels = gunzip(&labels_gz);
    let images = idx_bytes(IMAGES_MAGIC, &[2, 28, 28], &[7; 2 * PIXELS]);
    let mut flipped = labels_gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let with = |bytes: &[u8], at: usize, b: u8| {
        let mut v = bytes.to_vec();
        v[at] = b;
        v
    };
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        // (file, content, read as images?, expected fault)
        ("flipped.gz", flipped, false, "bad or truncated gzip data"),
        ("cut.gz", labels_gz[..labels_gz.len() / 2].to_vec(), false, "bad or truncated gzip data"),
        (
            "no-footer.gz",
            labels_gz[..labels_gz.len() - 4].to_vec(),
            false,
            "bad or truncated gzip data",
        ),
        ("empty", Vec::new(), true, "0 bytes, too short for an IDX header"),
        ("zip", b"PK\x03\x04 not idx".to_vec(), true, "not an IDX file: magic number 0x504b0304"),
        ("magic", with(&images, 1, 0x01), true, "not an IDX file: magic number 0x00010803"),
        ("float", with(&images, 2, 0x0d), true, "IDX element type 0x0d (f32)"),
        ("labels-as-images", labels.clone(), true, "says 1 dimension(s) (that of a label file)"),
        ("images-as-labels", images.clone(), false, "says 3 dimension(s) (that of an image file)"),
        (
            "short-header",
            images[..10].to_vec(),
            true,
            "truncated IDX header: 3 dimension(s) need 16 header bytes, the file has 10",
        ),
        (
            "truncated",
            images[..images.len() - 1].to_vec(),
            true,
            "truncated: the header says 2 x 28 x 28 = 1568 bytes of data, only 1567",
        ),
        (
            "extra",
            [&images[..], &[0]].concat(),
            true,
            "1 bytes of unexpected data after the 1568 bytes (2 x 28 x 28)",
        ),
        (
            "extra-labels",
            [&labels[..], &[1, 2]].concat(),
            false,
            "2 bytes of unexpected data after the 10000 bytes (10000)",
        ),
        (
            "truncated.gz",
            gzip(&labels[..5000]),
            false,
            "truncated: the header says 10000 = 10000 bytes of data, only 4992",
        ),
    ];
    for (file, content, as_images, fault) in cases {
        let path = tmp.path().join(file);
        fs::write(&path, content).unwrap();
        let e = if as_images {
            err_text(idx::read_images(&path))
        } else {
            err_text(idx::read_labels(&path))
        };
        assert!(
            e.contains(&path.display().to_string()),
            "{file}: error does not name the file: {e}"
        );
        assert!(e.contains(fault), "{file}: expected {fault:?} in: {e}");
    }
    let missing = tmp.path().join("missing");
    let e = err_text(idx::read_images(&missing));
    assert!(e.contains("cannot open") && e.contains(&missing.display().to_string()), "{e}");
}

#[test]
fn images_and_labels_that_do_not_fit_together_are_errors() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("data");
    let mnist = |dir: &Path| {
        load(
            DatasetName::Mnist,
            Split::Test,
            &Sources { data_dir: Some(dir.into()), ..nowhere(&tmp) },
        )
    };

    write_set(&dir, "t10k", 3, false);
    fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(LABELS_MAGIC, &[4], &[1, 2, 3, 4]))
        .unwrap();
    let e = err_text(mnist(&dir));
    assert!(
        e.contains("t10k-images-idx3-ubyte has 3 images but")
            && e.contains("t10k-labels-idx1-ubyte has 4 labels"),
        "{e}"
    );

    fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(LABELS_MAGIC, &[3], &[1, 10, 3]))
        .unwrap();
    let e = err_text(mnist(&dir));
    assert!(
        e.contains("t10k-labels-idx1-ubyte: label 10 at index 1; MNIST has classes 0 to 9"),
        "{e}"
    );

    fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(LABELS_MAGIC, &[3], &[1, 2, 3]))
        .unwrap();
    fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(IMAGES_MAGIC, &[3, 32, 32], &[0; 3 * 32 * 32]),
    )
    .unwrap();
    let e = err_text(mnist(&dir));
    assert!(
        e.contains("t10k-images-idx3-ubyte: images of 32 x 32 pixels, MNIST images are 28 x 28"),
        "{e}"
    );

    fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(LABELS_MAGIC, &[0], &[])).unwrap();
    fs::write(dir.join("t10k-images-idx3-ubyte"), idx_bytes(IMAGES_MAGIC, &[0, 28, 28], &[]))
        .unwrap();
    let e = err_text(mnist(&dir));
    assert!(e.contains("t10k-images-idx3-ubyte: no images"), "{e}");

    write_set(&dir, "t10k", 3, false);
    assert_eq!(mnist(&dir).unwrap().count, 3);
}

// ---- where the files are looked for ----

#[test]
fn lookup_order_is_flag_then_env_then_cache_then_system() {
    let tmp = TempDir::new().unwrap();
    let (flag, env, cache, system) = (
        tmp.path().join("flag"),
        tmp.path().join("env"),
        tmp.path().join("cache"),
        tmp.path().join("system"),
    );
    for (dir, count) in [
        (&flag, 3),
        (&env, 4),
        (&cache.join("fashion-mnist"), 5),
        (&system.join("fashion-mnist"), 6),
    ] {
        write_set(dir, "train", count, count % 2 == 0);
    }
    let all = Sources {
        data_dir: Some(flag.clone()),
        env_dir: Some(env.clone()),
        cache_dir: Some(cache.clone()),
        system_dir: system.clone(),
        mirrors: Some(Vec::new()),
    };
    let fashion =
        |sources: &Sources| load(DatasetName::FashionMnist, Split::Train, sources).unwrap();

    let d = fashion(&all);
    assert_eq!((d.count, d.images[0]), (3, 3));
    assert_eq!(
        d.source,
        format!("Fashion-MNIST training set from {} (--data-dir)", flag.display())
    );

    let d = fashion(&Sources { data_dir: None, ..all.clone() });
    assert_eq!((d.count, d.images[0]), (4, 4));
    assert_eq!(
        d.source,
        format!("Fashion-MNIST training set from {} (GAN_GPU_DATA)", env.display())
    );

    // A flag naming a directory without the files falls through to the next place.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let d = fashion(&Sources { data_dir: Some(empty), ..all.clone() });
    assert_eq!(d.count, 4);

    let d = fashion(&Sources { data_dir: None, env_dir: None, ..all.clone() });
    assert_eq!(d.count, 5);
    assert!(d.source.ends_with("(user cache)"), "{}", d.source);

    let d = fashion(&Sources { data_dir: None, env_dir: None, cache_dir: None, ..all.clone() });
    assert_eq!(d.count, 6);
    assert!(d.source.ends_with("(Debian package dataset-fashion-mnist)"), "{}", d.source);

    // The Debian directory is for Fashion-MNIST only.
    write_set(&system.join("mnist"), "t10k", 7, true);
    let e = err_text(load(
        DatasetName::Mnist,
        Split::Test,
        &Sources { data_dir: None, env_dir: None, cache_dir: None, ..all },
    ));
    assert!(e.starts_with("no MNIST test set found") && !e.contains("Debian"), "{e}");
}

#[test]
fn a_data_directory_may_hold_both_datasets_in_subdirectories() {
    let tmp = TempDir::new().unwrap();
    write_set(tmp.path(), "t10k", 9, false);
    write_set(&tmp.path().join("mnist"), "t10k", 7, false);
    write_set(&tmp.path().join("fashion-mnist"), "t10k", 8, true);
    let sources = Sources { env_dir: Some(tmp.path().into()), ..nowhere(&tmp) };
    assert_eq!(load(DatasetName::Mnist, Split::Test, &sources).unwrap().count, 7);
    assert_eq!(load(DatasetName::FashionMnist, Split::Test, &sources).unwrap().count, 8);
    fs::remove_dir_all(tmp.path().join("mnist")).unwrap();
    assert_eq!(load(DatasetName::Mnist, Split::Test, &sources).unwrap().count, 9);
}

#[test]
fn mnist_files_are_not_taken_for_fashion_mnist() {
    let tmp = TempDir::new().unwrap();
    let sources = Sources { env_dir: Some(mnist_dir()), ..nowhere(&tmp) };
    let e = err_text(load(DatasetName::FashionMnist, Split::Test, &sources));
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz holds the MNIST labels, not Fashion-MNIST"),
        "{e}"
    );
    assert_eq!(load(DatasetName::Mnist, Split::Test, &sources).unwrap().count, 10000);
}

#[test]
fn broken_files_are_an_error_not_skipped() {
    let tmp = TempDir::new().unwrap();
    let (flag, cache) = (tmp.path().join("flag"), tmp.path().join("cache"));
    write_set(&flag, "t10k", 3, false);
    write_set(&cache.join("mnist"), "t10k", 4, false);
    let bad = flag.join("t10k-images-idx3-ubyte");
    fs::write(&bad, idx_bytes(IMAGES_MAGIC, &[3, 28, 28], &[0; 100])).unwrap();
    let sources = Sources { data_dir: Some(flag), cache_dir: Some(cache), ..nowhere(&tmp) };
    let e = err_text(load(DatasetName::Mnist, Split::Test, &sources));
    assert!(e.contains(&bad.display().to_string()) && e.contains("truncated"), "{e}");
}

#[test]
fn the_public_loader_takes_the_data_dir_first() {
    let d = load_training_set(DatasetName::Mnist, Some(&mnist_dir())).unwrap();
    assert_eq!(
        (d.count, d.rows, d.cols, d.images.len(), d.labels.len()),
        (60000, 28, 28, 60000 * PIXELS, 60000)
    );
    assert!(d.source.ends_with("(--data-dir)"), "{}", d.source);
}

#[test]
fn shipped_subset_is_the_first_ten_thousand_training_digits() {
    let tmp = TempDir::new().unwrap();
    let d = load(DatasetName::Mnist, Split::Train, &nowhere(&tmp)).unwrap();
    assert_eq!((d.count, d.rows, d.cols), (10000, 28, 28));
    assert!(d.source.contains("10,000-digit subset shipped"), "{}", d.source);
    let images = idx::read_images(&real("train-images-idx3-ubyte.gz")).unwrap();
    let labels = idx::read_labels(&real("train-labels-idx1-ubyte.gz")).unwrap();
    assert!(
        d.images == images.pixels[..10000 * PIXELS],
        "shipped images differ from the first 10,000"
    );
    assert_eq!(d.labels, labels[..10000]);

    // The asset files themselves are IDX files whose headers say 10000.
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    assert_eq!(
        idx::read_images(&assets.join("mnist-train-10k-images-idx3-ubyte.gz")).unwrap().count,
        10000
    );
    assert_eq!(
        idx::read_labels(&assets.join("mnist-train-10k-labels-idx1-ubyte.gz")).unwrap().len(),
        10000
    );

    // No fallback for the test split or for Fashion-MNIST.
    assert!(load(DatasetName::Mnist, Split::Test, &nowhere(&tmp)).is_err());
    assert!(load(DatasetName::FashionMnist, Split::Train, &nowhere(&tmp)).is_err());
}

#[test]
fn when_nothing_works_the_error_lists_every_place_tried() {
    let tmp = TempDir::new().unwrap();
    let flag = tmp.path().join("typo");
    let (cache, system) = (tmp.path().join("cache"), tmp.path().join("system"));
    fs::create_dir_all(cache.join("fashion-mnist")).unwrap();
    fs::write(cache.join("fashion-mnist/train-images-idx3-ubyte.gz"), b"").unwrap();
    let closed = format!(
        "http://{}/fashion",
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
    );
    let sources = Sources {
        data_dir: Some(flag.clone()),
        env_dir: Some(mnist_dir()),
        cache_dir: Some(cache.clone()),
        system_dir: system.clone(),
        mirrors: Some(vec![closed.clone(), format!("{closed}2/")]),
    };
    let e = err_text(load(DatasetName::FashionMnist, Split::Train, &sources));
    for expected in [
        "no Fashion-MNIST training set found. Tried:".to_string(),
        format!("{} (--data-dir): no such directory", flag.display()),
        format!(
            "{} (GAN_GPU_DATA): train-labels-idx1-ubyte.gz holds the MNIST labels, not Fashion-MNIST",
            mnist_dir().display()
        ),
        format!(
            "{} (user cache): no train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz",
            cache.join("fashion-mnist").display()
        ),
        format!(
            "{} (Debian package dataset-fashion-mnist): no such directory",
            system.join("fashion-mnist").display()
        ),
        format!("download {closed}/train-labels-idx1-ubyte.gz: "),
        format!("download {closed}2/train-labels-idx1-ubyte.gz: "),
        "--data-dir DIR or set GAN_GPU_DATA=DIR".to_string(),
        "dataset-fashion-mnist package".to_string(),
    ] {
        assert!(e.contains(&expected), "expected {expected:?} in:\n{e}");
    }
    assert!(
        !e.contains("train-images-idx3-ubyte.gz: "),
        "the images are in the cache, not downloaded:\n{e}"
    );
    assert_eq!(
        fs::read_dir(cache.join("fashion-mnist")).unwrap().count(),
        1,
        "a failed download left a file"
    );

    let e = err_text(load(
        DatasetName::FashionMnist,
        Split::Test,
        &Sources { cache_dir: None, ..sources.clone() },
    ));
    assert!(e.contains("download: no user cache directory to download into"), "{e}");
    let e = err_text(load(
        DatasetName::FashionMnist,
        Split::Test,
        &Sources { mirrors: Some(Vec::new()), ..sources },
    ));
    assert!(e.contains("download: no mirrors (GAN_GPU_MIRRORS is empty)"), "{e}");
}

// ---- downloads from a loopback server ----

#[derive(Clone)]
enum Reply {
    Ok(Vec<u8>),
    /// Announces more bytes than it sends, then hangs up.
    Cut(Vec<u8>),
}

/// Serves `routes` on 127.0.0.1 until the test process ends; returns the base URL and the paths asked for.
fn serve(routes: HashMap<String, Reply>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            // A client that hangs up early is its own problem; the server goes on.
            let _ = respond(stream, &routes, &log);
        }
    });
    (base, asked)
}

fn respond(
    mut stream: TcpStream,
    routes: &HashMap<String, Reply>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    log.lock().unwrap().push(path.clone());
    let (status, body, announced) = match routes.get(&path) {
        Some(Reply::Ok(body)) => ("200 OK", body.clone(), body.len()),
        Some(Reply::Cut(body)) => ("200 OK", body.clone(), body.len() * 2),
        None => ("404 Not Found", b"not here".to_vec(), 8),
    };
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)
}

fn t10k_routes(prefix: &str) -> HashMap<String, Reply> {
    ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
        .into_iter()
        .map(|f| (format!("{prefix}/{f}"), Reply::Ok(fs::read(real(f)).unwrap())))
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_download_is_verified_and_placed_in_the_cache() {
    let (base, asked) = serve(t10k_routes("/mirror"));
    let tmp = TempDir::new().unwrap();
    let cache = tmp.path().join("cache");
    let sources = Sources {
        cache_dir: Some(cache.clone()),
        // The first mirror has nothing; the trailing slash is optional.
        mirrors: Some(vec![format!("{base}/empty/"), format!("{base}/mirror")]),
        ..nowhere(&tmp)
    };
    let d = load(DatasetName::Mnist, Split::Test, &sources).unwrap();
    assert_eq!((d.count, d.rows, d.cols), (10000, 28, 28));
    assert_eq!(d.images, idx::read_images(&real("t10k-images-idx3-ubyte.gz")).unwrap().pixels);
    assert_eq!(
        d.source,
        format!(
            "MNIST test set from {} (downloaded from {base}/mirror/t10k-images-idx3-ubyte.gz, {base}/mirror/t10k-labels-idx1-ubyte.gz)",
            cache.join("mnist").display()
        )
    );
    let dir = cache.join("mnist");
    assert_eq!(names_in(&dir), ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]);
    for f in names_in(&dir) {
        assert_eq!(fs::read(dir.join(&f)).unwrap(), fs::read(real(&f)).unwrap());
    }
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "/empty/t10k-images-idx3-ubyte.gz",
            "/mirror/t10k-images-idx3-ubyte.gz",
            "/empty/t10k-labels-idx1-ubyte.gz",
            "/mirror/t10k-labels-idx1-ubyte.gz"
        ]
    );

    // Next time the cache answers, and the server is not asked again.
    let d = load(DatasetName::Mnist, Split::Test, &sources).unwrap();
    assert!(d.source.ends_with("(user cache)"), "{}", d.source);
    assert_eq!(asked.lock().unwrap().len(), 4);
}

#[test]
fn only_the_missing_file_is_downloaded() {
    let (base, asked) = serve(t10k_routes(""));
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("cache/mnist");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        gunzip(&fs::read(real("t10k-labels-idx1-ubyte.gz")).unwrap()),
    )
    .unwrap();
    let sources = Sources {
        cache_dir: Some(tmp.path().join("cache")),
        mirrors: Some(vec![base]),
        ..nowhere(&tmp)
    };
    assert_eq!(load(DatasetName::Mnist, Split::Test, &sources).unwrap().count, 10000);
    assert_eq!(*asked.lock().unwrap(), ["/t10k-images-idx3-ubyte.gz"]);
    assert_eq!(names_in(&dir), ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"]);
}

#[test]
fn bad_downloads_are_rejected_and_leave_no_file() {
    let real_images = fs::read(real("t10k-images-idx3-ubyte.gz")).unwrap();
    let mut content = gunzip(&real_images);
    content[5000] ^= 1;
    let bad: [(&str, Reply, &str); 4] = [
        ("one-pixel", Reply::Ok(gzip(&content)), "checksum mismatch: SHA-256 of the 7840016 bytes"),
        (
            "html",
            Reply::Ok(b"<html>moved</html>".to_vec()),
            "checksum mismatch: SHA-256 of the 18 bytes",
        ),
        (
            "not-gzip",
            Reply::Ok([&[0x1f, 0x8b][..], &[0; 64]].concat()),
            "bad or truncated gzip data",
        ),
        ("cut", Reply::Cut(real_images[..real_images.len() / 2].to_vec()), "download interrupted"),
    ];
    for (name, reply, fault) in bad {
        let mut routes = t10k_routes(&format!("/{name}"));
        routes.insert(format!("/{name}/t10k-images-idx3-ubyte.gz"), reply);
        let (base, _) = serve(routes);
        let tmp = TempDir::new().unwrap();
        let cache = tmp.path().join("cache");
        let sources = Sources {
            cache_dir: Some(cache.clone()),
            mirrors: Some(vec![format!("{base}/{name}")]),
            ..nowhere(&tmp)
        };
        let e = err_text(load(DatasetName::Mnist, Split::Test, &sources));
        let url = format!("{base}/{name}/t10k-images-idx3-ubyte.gz");
        assert!(
            e.contains(&format!("download {url}: ")) && e.contains(fault),
            "{name}: expected {fault:?} in:\n{e}"
        );
        assert_eq!(
            names_in(&cache.join("mnist")),
            Vec::<String>::new(),
            "{name}: a bad download left a file"
        );
    }
}

// ---- the dataset name on the command line and in JSON ----

#[test]
fn dataset_names_parse_and_serialize_in_kebab_case() {
    use clap::ValueEnum;
    assert_eq!(DatasetName::from_str("fashion-mnist", false).unwrap(), DatasetName::FashionMnist);
    assert_eq!(DatasetName::from_str("mnist", false).unwrap(), DatasetName::Mnist);
    assert_eq!(serde_json::to_string(&DatasetName::FashionMnist).unwrap(), "\"fashion-mnist\"");
    assert_eq!(serde_json::from_str::<DatasetName>("\"mnist\"").unwrap(), DatasetName::Mnist);
    assert_eq!(DatasetName::FashionMnist.to_string(), "Fashion-MNIST");
}

#[test]
fn sources_from_env_follow_the_flag_and_the_environment() {
    let flag = Path::new("/some/data");
    let s = Sources::from_env(Some(flag));
    assert_eq!(s.data_dir.as_deref(), Some(flag));
    let env = std::env::var_os("GAN_GPU_DATA").filter(|v| !v.is_empty()).map(PathBuf::from);
    assert_eq!(s.env_dir, env);
    assert_eq!(s.cache_dir, dirs::cache_dir().map(|c| c.join("gan-gpu")));
    assert_eq!(s.system_dir, Path::new("/usr/share/datasets"));
    match std::env::var("GAN_GPU_MIRRORS") {
        Ok(list) => assert_eq!(s.mirrors.unwrap().join(","), list.replace(' ', "")),
        Err(_) => assert_eq!(s.mirrors, None),
    }
    assert_eq!(Sources::from_env(None).data_dir, None);
}
