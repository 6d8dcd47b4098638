//! Datasets: MNIST and Fashion-MNIST in their IDX files ([`idx`]), found on disk, downloaded into
//! the user's cache, or, for the MNIST training digits only, taken from a 10,000-digit subset built
//! into the binary (`assets/`).
//!
//! Where the files are looked for, in order (each of `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, raw or `.gz`):
//! 1. `--data-dir DIR`, then 2. `GAN_GPU_DATA=DIR`: the directory itself, or its subdirectory
//!    `mnist` / `fashion-mnist` if it has one (so one directory can hold both datasets);
//! 3. the user cache, `<cache dir>/gan-gpu/mnist` or `.../fashion-mnist`;
//! 4. Fashion-MNIST only: `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`);
//! 5. a download into the user cache from public mirrors (`GAN_GPU_MIRRORS=URL,URL` replaces
//!    them; an empty value turns downloads off), checked against the SHA-256 of the published
//!    content;
//! 6. MNIST training set only: the shipped subset, with a notice on stderr.
//!
//! Files found on disk are checked cheaply (headers, sizes, counts, 28 x 28, labels below 10, and
//! that the labels are not those of the other dataset); downloads are checked by hash.

mod download;
pub mod idx;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Images and labels of one split of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// `count` images of `rows` x `cols` grey bytes (0 = background), row-major, one after another.
    pub images: Vec<u8>,
    /// The class of each image, `0..10`.
    pub labels: Vec<u8>,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// Where the data came from, for people, e.g. "MNIST training set from /data/mnist (--data-dir)".
    pub source: String,
}

impl Dataset {
    /// `count` 28 x 28 images of a fixed pattern, for what does not depend on the pixels
    /// (timing training steps, compiling their shaders).
    pub fn pattern(count: usize, source: &str) -> Dataset {
        Dataset {
            images: (0..count * 28 * 28).map(|i| (i * 37 % 256) as u8).collect(),
            labels: (0..count).map(|i| (i % 10) as u8).collect(),
            count,
            rows: 28,
            cols: 28,
            source: source.into(),
        }
    }
}

/// The datasets gan-gpu knows (`--dataset mnist|fashion-mnist`); both are 28 x 28 grey images
/// in 10 classes, 60,000 for training and 10,000 for testing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    Mnist,
    FashionMnist,
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetName::Mnist => "MNIST",
            DatasetName::FashionMnist => "Fashion-MNIST",
        })
    }
}

/// Which part of a dataset: the `train-*` files or the `t10k-*` files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "training",
            Split::Test => "test",
        })
    }
}

/// Everything the lookup consults, made explicit so that it can be tested without touching the
/// process environment; [`Sources::from_env`] fills it in the way the command line does.
#[derive(Clone, Debug)]
pub struct Sources {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `GAN_GPU_DATA`.
    pub env_dir: Option<PathBuf>,
    /// gan-gpu's directory in the user cache; the dataset's subdirectory (`mnist`,
    /// `fashion-mnist`) is looked in and downloaded into. `None`: no cache, no download.
    pub cache_dir: Option<PathBuf>,
    /// Where Debian's dataset packages install (`/usr/share/datasets`); only its
    /// `fashion-mnist` subdirectory is used.
    pub system_dir: PathBuf,
    /// Base URLs to download from, in order (`GAN_GPU_MIRRORS`); `None`: the dataset's public mirrors.
    pub mirrors: Option<Vec<String>>,
}

impl Sources {
    /// `data_dir` (the `--data-dir` flag), `GAN_GPU_DATA`, `GAN_GPU_MIRRORS`, the user's cache
    /// dir and `/usr/share/datasets`. Empty environment variables count as set for the mirrors
    /// (no downloads) and as unset for the data directory.
    pub fn from_env(data_dir: Option<&Path>) -> Sources {
        Sources {
            data_dir: data_dir.map(Path::to_path_buf),
            env_dir: std::env::var_os("GAN_GPU_DATA").filter(|v| !v.is_empty()).map(PathBuf::from),
            cache_dir: dirs::cache_dir().map(|c| c.join("gan-gpu")),
            system_dir: PathBuf::from("/usr/share/datasets"),
            mirrors: std::env::var("GAN_GPU_MIRRORS").ok().map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(String::from)
                    .collect()
            }),
        }
    }
}

/// The 60,000 training images (or, for MNIST when nothing else works, the shipped first 10,000).
pub fn load_training_set(name: DatasetName, data_dir: Option<&Path>) -> Result<Dataset> {
    load(name, Split::Train, &Sources::from_env(data_dir))
}

/// The 10,000 test images.
pub fn load_test_set(name: DatasetName, data_dir: Option<&Path>) -> Result<Dataset> {
    load(name, Split::Test, &Sources::from_env(data_dir))
}

/// The lookup behind [`load_training_set`] and [`load_test_set`], with its inputs given.
pub fn load(name: DatasetName, split: Split, sources: &Sources) -> Result<Dataset> {
    let files = Files::of(name, split);
    let subdir = match name {
        DatasetName::Mnist => "mnist",
        DatasetName::FashionMnist => "fashion-mnist",
    };
    let mut places: Vec<(PathBuf, &str)> = Vec::new();
    for (dir, origin) in [(&sources.data_dir, "--data-dir"), (&sources.env_dir, "GAN_GPU_DATA")] {
        if let Some(dir) = dir {
            let sub = dir.join(subdir);
            places.push((if sub.is_dir() { sub } else { dir.clone() }, origin));
        }
    }
    let cache = sources.cache_dir.as_ref().map(|c| c.join(subdir));
    if let Some(cache) = &cache {
        places.push((cache.clone(), "user cache"));
    }
    if name == DatasetName::FashionMnist {
        places.push((sources.system_dir.join(subdir), "Debian package dataset-fashion-mnist"));
    }

    let mut tried = Vec::new();
    let mut missed_explicit = false;
    for (dir, origin) in &places {
        let source = format!("{name} {split} set from {} ({origin})", dir.display());
        match look_in(dir, &files, &source)? {
            Found::Here(dataset) => {
                if missed_explicit {
                    eprintln!(
                        "note: {name} {split} files not found where asked:\n{}",
                        indent(&tried)
                    );
                    eprintln!("note: using the {}", dataset.source);
                }
                return Ok(dataset);
            }
            Found::Absent(why) => {
                tried.push(format!("{} ({origin}): {why}", dir.display()));
                missed_explicit |= *origin == "--data-dir" || *origin == "GAN_GPU_DATA";
            }
        }
    }

    let mirrors: Vec<String> = match &sources.mirrors {
        Some(list) => list.clone(),
        None => files.mirrors.iter().map(|m| m.to_string()).collect(),
    };
    match &cache {
        None => tried.push("download: no user cache directory to download into".to_string()),
        Some(_) if mirrors.is_empty() => {
            tried.push("download: no mirrors (GAN_GPU_MIRRORS is empty)".to_string())
        }
        Some(cache) => match fetch_missing(cache, &files, &mirrors) {
            Err(failures) => tried.extend(failures),
            Ok(urls) => {
                let source = format!(
                    "{name} {split} set from {} (downloaded from {})",
                    cache.display(),
                    urls.join(", ")
                );
                match look_in(cache, &files, &source)? {
                    Found::Here(dataset) => return Ok(dataset),
                    Found::Absent(why) => tried.push(format!(
                        "{} (user cache, after downloading): {why}",
                        cache.display()
                    )),
                }
            }
        },
    }

    if (name, split) == (DatasetName::Mnist, Split::Train) {
        eprintln!(
            "note: the full MNIST training set (60,000 digits) was not found and could not be downloaded:\n{}\n\
             note: training on the 10,000-digit subset shipped inside gan-gpu (the first 10,000 training digits).\n\
             note: for the full set, put {} and {} (raw or .gz) in a directory and pass --data-dir DIR or set \
             GAN_GPU_DATA=DIR, or run once with network access to download them{}.",
            indent(&tried),
            files.images,
            files.labels,
            cache.as_ref().map(|c| format!(" into {}", c.display())).unwrap_or_default()
        );
        return shipped_subset();
    }
    bail!(
        "no {name} {split} set found. Tried:\n{}\nTo supply it, put {} and {} (raw or .gz) in a directory and pass \
         --data-dir DIR or set GAN_GPU_DATA=DIR{}, or connect to the network so that gan-gpu can download them{}.",
        indent(&tried),
        files.images,
        files.labels,
        if name == DatasetName::FashionMnist {
            ", or install Debian's dataset-fashion-mnist package"
        } else {
            ""
        },
        cache.as_ref().map(|c| format!(" into {}", c.display())).unwrap_or_default()
    )
}

/// Image side of both datasets.
const SIDE: usize = 28;
const CLASSES: u8 = 10;

const MNIST_MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];
const FASHION_MIRRORS: &[&str] = &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];

/// The two files of one split, with the SHA-256 of their published decompressed content
/// (MNIST: as listed in shared/data/mnist/README.md; Fashion-MNIST: of the files whose gzip MD5s
/// github.com/zalandoresearch/fashion-mnist publishes, identical to Debian's package).
struct Files {
    name: DatasetName,
    images: &'static str,
    labels: &'static str,
    images_sha256: &'static str,
    labels_sha256: &'static str,
    /// The labels of the same split of the other dataset, whose files have the same names.
    other_labels_sha256: &'static str,
    other: DatasetName,
    mirrors: &'static [&'static str],
}

impl Files {
    fn of(name: DatasetName, split: Split) -> Files {
        const MNIST: [[&str; 2]; 2] = [
            [
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ],
            [
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ],
        ];
        const FASHION: [[&str; 2]; 2] = [
            [
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ],
            [
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ],
        ];
        let (i, images, labels) = match split {
            Split::Train => (0, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => (1, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        };
        let (own, other, other_sums, mirrors) = match name {
            DatasetName::Mnist => (MNIST[i], DatasetName::FashionMnist, FASHION[i], MNIST_MIRRORS),
            DatasetName::FashionMnist => {
                (FASHION[i], DatasetName::Mnist, MNIST[i], FASHION_MIRRORS)
            }
        };
        Files {
            name,
            images,
            labels,
            images_sha256: own[0],
            labels_sha256: own[1],
            other_labels_sha256: other_sums[1],
            other,
            mirrors,
        }
    }
}

enum Found {
    Here(Dataset),
    /// Not in this place, and why; the lookup goes on.
    Absent(String),
}

/// `stem` or `stem.gz` in `dir`, whichever exists (the raw file first).
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))].into_iter().find(|p| p.is_file())
}

/// The dataset in `dir`, or why it is not there. Files that are there but broken are an error.
fn look_in(dir: &Path, files: &Files, source: &str) -> Result<Found> {
    if !dir.is_dir() {
        return Ok(Found::Absent("no such directory".into()));
    }
    let (images, labels) = match (find(dir, files.images), find(dir, files.labels)) {
        (Some(images), Some(labels)) => (images, labels),
        (images, _) => {
            let missing = if images.is_none() { files.images } else { files.labels };
            return Ok(Found::Absent(format!("no {missing} or {missing}.gz")));
        }
    };
    let content = idx::decode_file(&labels)?;
    if sha256_hex(&content) == files.other_labels_sha256 {
        let file = labels.file_name().unwrap_or_default().to_string_lossy();
        return Ok(Found::Absent(format!(
            "{file} holds the {} labels, not {}",
            files.other, files.name
        )));
    }
    let labels_name = labels.display().to_string();
    let labels = idx::labels_from_content(content, &labels_name)?;
    let images_name = images.display().to_string();
    let images = idx::read_images(&images)?;
    let dataset =
        assemble(files.name, images, labels, &images_name, &labels_name, source.to_string())?;
    Ok(Found::Here(dataset))
}

/// Checks that images and labels belong together and look like `name`.
fn assemble(
    name: DatasetName,
    images: idx::Images,
    labels: Vec<u8>,
    images_name: &str,
    labels_name: &str,
    source: String,
) -> Result<Dataset> {
    if (images.rows, images.cols) != (SIDE, SIDE) {
        bail!(
            "{images_name}: images of {} x {} pixels, {name} images are {SIDE} x {SIDE}",
            images.rows,
            images.cols
        );
    }
    if images.count != labels.len() {
        bail!(
            "{images_name} has {} images but {labels_name} has {} labels; they must be the same",
            images.count,
            labels.len()
        );
    }
    if images.count == 0 {
        bail!("{images_name}: no images");
    }
    if let Some(i) = labels.iter().position(|&l| l >= CLASSES) {
        bail!(
            "{labels_name}: label {} at index {i}; {name} has classes 0 to {}",
            labels[i],
            CLASSES - 1
        );
    }
    Ok(Dataset {
        count: images.count,
        rows: images.rows,
        cols: images.cols,
        images: images.pixels,
        labels,
        source,
    })
}

/// Downloads the files of `files` that `dir` lacks, each from the first mirror that delivers it
/// intact; returns the URLs used, or what went wrong at every mirror for the first file none had.
fn fetch_missing(
    dir: &Path,
    files: &Files,
    mirrors: &[String],
) -> Result<Vec<String>, Vec<String>> {
    let mut used = Vec::new();
    for (stem, sha256) in [(files.images, files.images_sha256), (files.labels, files.labels_sha256)]
    {
        if find(dir, stem).is_some() {
            continue;
        }
        let mut failures = Vec::new();
        let fetched = mirrors.iter().find_map(|base| {
            let url = format!("{}/{stem}.gz", base.trim_end_matches('/'));
            match download::download(&url, dir, stem, sha256) {
                Ok(_) => Some(url),
                Err(e) => {
                    failures.push(format!("download {url}: {e:#}"));
                    None
                }
            }
        });
        match fetched {
            Some(url) => used.push(url),
            None => return Err(failures),
        }
    }
    Ok(used)
}

static SHIPPED_IMAGES: &[u8] = include_bytes!("../../assets/mnist-train-10k-images-idx3-ubyte.gz");
static SHIPPED_LABELS: &[u8] = include_bytes!("../../assets/mnist-train-10k-labels-idx1-ubyte.gz");

/// The first 10,000 MNIST training digits, built into the binary.
fn shipped_subset() -> Result<Dataset> {
    let (images_name, labels_name) = (
        "shipped mnist-train-10k-images-idx3-ubyte.gz",
        "shipped mnist-train-10k-labels-idx1-ubyte.gz",
    );
    let images =
        idx::images_from_content(idx::decode_bytes(SHIPPED_IMAGES, images_name)?, images_name)?;
    let labels =
        idx::labels_from_content(idx::decode_bytes(SHIPPED_LABELS, labels_name)?, labels_name)?;
    let source = "MNIST training set, the 10,000-digit subset shipped inside gan-gpu".to_string();
    assemble(DatasetName::Mnist, images, labels, images_name, labels_name, source)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn indent(lines: &[String]) -> String {
    lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
