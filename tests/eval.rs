//! `gan-gpu eval`: real digits, training data and noise land where they should, and any image
//! set (IDX file, PNG folder, a checkpoint's images) can be scored.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use gan_gpu::classifier::Classifier;
use gan_gpu::data::{self, Dataset, DatasetName, idx};
use gan_gpu::eval::Evaluator;
use indicatif::ProgressBar;

const IMAGE_LEN: usize = 28 * 28;

fn training_set() -> &'static Dataset {
    static SET: OnceLock<Dataset> = OnceLock::new();
    SET.get_or_init(|| data::load_training_set(DatasetName::Mnist, None).expect("MNIST"))
}

fn test_set() -> &'static Dataset {
    static SET: OnceLock<Dataset> = OnceLock::new();
    SET.get_or_init(|| data::load_test_set(DatasetName::Mnist, None).expect("MNIST (GAN_GPU_DATA)"))
}

/// Images `start..start + count` of `set`, as a dataset of their own.
fn slice(set: &Dataset, start: usize, count: usize) -> Dataset {
    Dataset {
        images: set.images[start * IMAGE_LEN..(start + count) * IMAGE_LEN].to_vec(),
        labels: set.labels[start..start + count].to_vec(),
        count,
        rows: 28,
        cols: 28,
        source: format!("images {start}..{} of the {}", start + count, set.source),
    }
}

fn evaluator(gpu: &gan_gpu::gpu::Gpu, reference: &Dataset) -> Evaluator {
    let classifier = Classifier::shipped(gpu).unwrap();
    Evaluator::new(gpu, classifier, reference, &ProgressBar::hidden()).unwrap()
}

/// Against 2000 test images: 1000 other test images (of the same writers: MNIST's test set
/// has others in its second half) and 1000 training images are near them, 1000 of the
/// reference's own images nearer still, uniform noise far away; real digits cover all ten
/// classes confidently (IS near 10), noise does not.
#[test]
fn references_are_sane() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    let test = test_set();
    let evaluator = evaluator(gpu, &slice(test, 0, 2000));
    let held_out = slice(test, 2000, 1000);
    let scores =
        evaluator.score_images(gpu, &held_out.images, held_out.count, &ProgressBar::hidden());
    let report = evaluator.report(gpu, scores, 1000, training_set(), 3, &ProgressBar::hidden());
    eprintln!("{}", report.table("held-out test"));
    let r = &report.references;
    let real = [&report.scores, &r.test_data, &r.training_data];
    let noise = &r.uniform_noise;
    // FID's scale is the classifier's feature scale: real digits are judged against noise.
    for s in real {
        assert!(s.fid < noise.fid / 20.0 && s.inception_score > 8.0, "{s:?} vs {noise:?}");
        assert!(s.mean_confidence > 0.9 && s.modes_covered == 10, "{s:?}");
    }
    // The reference's own images sit closer than any other sample.
    assert!(r.test_data.fid < report.scores.fid && r.test_data.fid < r.training_data.fid);
    assert!(noise.fid > 20.0 * r.training_data.fid.max(1.0), "{noise:?}");
    assert!(noise.inception_score < 3.0 && noise.modes_covered < 5, "{noise:?}");
    // The same seed draws the same references.
    assert_eq!(evaluator.reference_scores(1000, 3), r.test_data);
}

fn gan_gpu(args: &[&str]) -> Output {
    let out =
        Command::new(env!("CARGO_BIN_EXE_gan-gpu")).args(args).output().expect("running gan-gpu");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("eval --json prints one JSON object")
}

/// Writes a small MNIST (500 test, 500 training images) where --data-dir finds it, so the
/// command line's references cost little.
fn small_mnist(dir: &Path) {
    for (set, images, labels) in [
        (test_set(), "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        (training_set(), "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ] {
        let part = slice(set, 0, 500);
        idx::write_images(&dir.join(images), 500, 28, 28, &part.images).unwrap();
        let mut label_file = idx::LABELS_MAGIC.to_be_bytes().to_vec();
        label_file.extend(500u32.to_be_bytes());
        label_file.extend(&part.labels);
        std::fs::write(dir.join(labels), label_file).unwrap();
    }
}

/// The same 60 test digits as an IDX file and as a folder of PNGs score the same, near the
/// real data; a checkpoint's images score too, and the table names every reference.
#[test]
fn eval_scores_idx_files_png_folders_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("mnist");
    std::fs::create_dir(&data_dir).unwrap();
    small_mnist(&data_dir);
    let digits = slice(test_set(), 1000, 60);
    let idx_file = dir.path().join("digits.idx");
    idx::write_images(&idx_file, 60, 28, 28, &digits.images).unwrap();
    let pngs = dir.path().join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    for (i, pixels) in digits.images.chunks_exact(IMAGE_LEN).enumerate() {
        let image = image::GrayImage::from_raw(28, 28, pixels.to_vec()).unwrap();
        image.save(pngs.join(format!("{i:03}.png"))).unwrap();
    }
    let d = data_dir.to_str().unwrap();
    let from_idx = json(&gan_gpu(&[
        "eval",
        "--images",
        idx_file.to_str().unwrap(),
        "--data-dir",
        d,
        "--json",
    ]));
    let from_pngs =
        json(&gan_gpu(&["eval", "--images", pngs.to_str().unwrap(), "--data-dir", d, "--json"]));
    assert_eq!(from_idx, from_pngs);
    assert_eq!(from_idx["images"], 60);
    let noise_fid = from_idx["references"]["uniform_noise"]["fid"].as_f64().unwrap();
    let fid = from_idx["fid"].as_f64().unwrap();
    // 60 images: a small sample's FID carries a large bias, so the margin to noise is smaller.
    assert!(fid > 0.0 && fid < noise_fid / 5.0, "{from_idx}");
    assert!(from_idx["is"].as_f64().unwrap() > 5.0, "{from_idx}");
    assert_eq!(
        from_idx["class_hist"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        60
    );
    for key in ["fid", "is", "mean_confidence", "modes_covered", "class_hist"] {
        assert!(from_idx["references"]["training_data"].get(key).is_some(), "{key}");
    }

    let run = dir.path().join("run");
    gan_gpu(&[
        "train",
        "--iters",
        "2",
        "--batch-size",
        "8",
        "--quiet",
        "--data-dir",
        d,
        "--out",
        run.to_str().unwrap(),
    ]);
    let ck = run.join("checkpoints/latest.safetensors");
    let out =
        gan_gpu(&["eval", "--checkpoint", ck.to_str().unwrap(), "--count", "50", "--data-dir", d]);
    let table = String::from_utf8_lossy(&out.stdout);
    for row in ["generated", "test data", "training data", "uniform noise"] {
        assert!(table.contains(row), "{table}");
    }
}
