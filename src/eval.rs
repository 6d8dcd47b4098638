//! Objective quality figures for generated digits (issue 5), from a digit classifier's
//! penultimate features and class probabilities: the classifier-FID (Fréchet distance between
//! Gaussian fits of the features of generated and of real images; lower is better), the
//! inception score (high when every image is confidently one class and the classes are
//! balanced; 10 at most), the mean top-class confidence, and the class histogram with the
//! number of modes (classes) it covers.
//!
//! The classifier runs on the GPU; the linear algebra runs in f64 on the CPU (a few d x d
//! matrices per evaluation, d the classifier's feature width).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use indicatif::ProgressBar;
use rand::seq::index;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::classifier::{CLASSES, Classifier, Embedding, IMAGE_LEN, SIDE};
use crate::data::{Dataset, idx};
use crate::generate;
use crate::gpu::Gpu;
use crate::images;
use crate::nn::gan::GanSpec;

/// Images per classifier call: bounds its buffers and paces the progress bar.
const EMBED_CHUNK: usize = 1000;

/// Images `train --eval-every` generates and scores each time: enough for a stable trend,
/// few enough to cost seconds. FID falls as the count grows (it is biased upwards for small
/// samples), so compare figures of the same count only.
pub const TRAIN_EVAL_COUNT: usize = 2000;

/// A class holds a mode when it has at least this share of the images.
pub const MODE_SHARE: f64 = 0.05;

/// Sweeps after which the Jacobi eigen-solver gives up converging further (it converges
/// quadratically: a few sweeps are ample for any matrix it sees).
const MAX_SWEEPS: usize = 64;

/// The mean and covariance of a set of feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Gaussian {
    pub dim: usize,
    pub mean: Vec<f64>,
    /// dim x dim, row-major; the unbiased estimate (divided by count - 1), as numpy's `cov`.
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// The fit of `count` feature vectors of `dim` values, one after another. Needs two.
    pub fn fit(features: &[f32], count: usize, dim: usize) -> Gaussian {
        assert!(count >= 2, "a covariance needs at least 2 samples, got {count}");
        assert_eq!(features.len(), count * dim, "features are not {count} x {dim}");
        let mut mean = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= count as f64);
        // Upper triangle of the sum of outer products of centred rows, then mirrored.
        let mut cov = vec![0.0; dim * dim];
        let mut centred = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = x as f64 - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                for (acc, &cj) in cov[i * dim + i..(i + 1) * dim].iter_mut().zip(&centred[i..]) {
                    *acc += ci * cj;
                }
            }
        }
        let scale = 1.0 / (count - 1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] * scale;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Gaussian { dim, mean, cov }
    }
}

/// A Gaussian prepared as the fixed side of many Fréchet distances: its covariance's square
/// root is computed once.
#[derive(Clone, Debug)]
pub struct FrechetReference {
    pub gaussian: Gaussian,
    sqrt_cov: Vec<f64>,
}

impl FrechetReference {
    pub fn new(gaussian: Gaussian) -> FrechetReference {
        let sqrt_cov = psd_sqrt(&gaussian.cov, gaussian.dim);
        FrechetReference { gaussian, sqrt_cov }
    }

    /// The Fréchet distance from this reference to `other`:
    /// |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2). S1 S2 has the eigenvalues of the
    /// symmetric sqrt(S1) S2 sqrt(S1), so tr sqrt(S1 S2) is the sum of their square roots.
    pub fn distance(&self, other: &Gaussian) -> f64 {
        let (a, n) = (&self.gaussian, self.gaussian.dim);
        assert_eq!(other.dim, n, "the two Gaussians have different dimensions");
        let mean_term: f64 = a.mean.iter().zip(&other.mean).map(|(x, y)| (x - y).powi(2)).sum();
        let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
        let root = &self.sqrt_cov;
        let mut product = matmul(&matmul(root, &other.cov, n), root, n);
        symmetrize(&mut product, n);
        // Rounding leaves tiny negative eigenvalues where the product is singular.
        let trace_sqrt: f64 =
            symmetric_eigen(&product, n).0.iter().map(|&l| l.max(0.0).sqrt()).sum();
        let distance = mean_term + trace(&a.cov) + trace(&other.cov) - 2.0 * trace_sqrt;
        // A distance; rounding can take identical inputs a hair below zero.
        distance.max(0.0)
    }
}

/// The Fréchet distance between two Gaussians (symmetric; 0 for identical ones).
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    FrechetReference::new(a.clone()).distance(b)
}

/// Eigenvalues and eigenvectors of a symmetric n x n matrix (row-major) by cyclic Jacobi
/// rotations: the eigenvalues in no particular order, and the eigenvectors as the columns of
/// an n x n row-major matrix, column k belonging to eigenvalue k.
pub fn symmetric_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(matrix.len(), n * n, "not an {n} x {n} matrix");
    let mut a = matrix.to_vec();
    let mut vectors = vec![0.0; n * n];
    for i in 0..n {
        vectors[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _ in 0..MAX_SWEEPS {
        let off: f64 = (0..n)
            .flat_map(|p| (p + 1..n).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum();
        if off <= (f64::EPSILON * f64::EPSILON) * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub & Van Loan, sym.schur2), the
                // smaller of the two angles for stability.
                let tau = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = if tau.abs() > 1e150 {
                    0.5 / tau
                } else {
                    tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt())
                };
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (vectors[k * n + p], vectors[k * n + q]);
                    vectors[k * n + p] = c * vkp - s * vkq;
                    vectors[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), vectors)
}

/// The symmetric square root of a symmetric positive semi-definite matrix: V sqrt(L) V^T, with
/// the eigenvalues that rounding pushed below zero taken as zero.
pub fn psd_sqrt(matrix: &[f64], n: usize) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(matrix, n);
    let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let v: f64 = (0..n).map(|k| vectors[i * n + k] * roots[k] * vectors[j * n + k]).sum();
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for (o, &bkj) in out[i * n..(i + 1) * n].iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *o += aik * bkj;
            }
        }
    }
    out
}

fn symmetrize(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in i + 1..n {
            let v = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
}

/// exp(mean over images of KL(p(y|x) || p(y))), p(y) the mean of the rows: `probs` holds
/// `count` rows of CLASSES probabilities. One split over all images.
pub fn inception_score(probs: &[f32], count: usize) -> f64 {
    assert_eq!(probs.len(), count * CLASSES, "probabilities are not {count} x {CLASSES}");
    let mut marginal = [0.0f64; CLASSES];
    for row in probs.chunks_exact(CLASSES) {
        for (m, &p) in marginal.iter_mut().zip(row) {
            *m += p as f64 / count as f64;
        }
    }
    let mut kl_sum = 0.0;
    for row in probs.chunks_exact(CLASSES) {
        for (&p, &m) in row.iter().zip(&marginal) {
            // p ln p -> 0 as p -> 0.
            if p > 0.0 {
                let p = p as f64;
                kl_sum += p * (p.ln() - m.ln());
            }
        }
    }
    (kl_sum / count as f64).exp()
}

/// The mean over images of the top class's probability.
pub fn mean_confidence(probs: &[f32], count: usize) -> f64 {
    let sum: f64 = probs
        .chunks_exact(CLASSES)
        .map(|row| row.iter().fold(0.0f32, |a, &b| a.max(b)) as f64)
        .sum();
    sum / count as f64
}

/// How many images the classifier puts in each class (their most probable one).
pub fn class_histogram(probs: &[f32]) -> [usize; CLASSES] {
    let mut hist = [0; CLASSES];
    for row in probs.chunks_exact(CLASSES) {
        let top = (0..CLASSES).fold(0, |best, c| if row[c] > row[best] { c } else { best });
        hist[top] += 1;
    }
    hist
}

/// Classes holding at least MODE_SHARE of the images.
pub fn modes_covered(hist: &[usize; CLASSES]) -> usize {
    let total: usize = hist.iter().sum();
    hist.iter().filter(|&&n| n > 0 && n as f64 >= MODE_SHARE * total as f64).count()
}

/// The figures of one set of images.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scores {
    /// Classifier-FID against the reference (the MNIST test set); lower is better.
    pub fid: f64,
    #[serde(rename = "is")]
    pub inception_score: f64,
    pub mean_confidence: f64,
    pub class_hist: [usize; CLASSES],
    pub modes_covered: usize,
}

/// The classifier with the reference statistics of real images (the MNIST test set): scores
/// any set of 28 x 28 grey images.
pub struct Evaluator {
    classifier: Classifier,
    /// The reference images' embedding, from which the real-data reference rows are drawn.
    test: Embedding,
    test_count: usize,
    reference: FrechetReference,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluator")
            .field("test_count", &self.test_count)
            .field("feature_dim", &self.test.dim)
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    /// Embeds `test_set` (the reference) once; `progress` advances by its image count.
    pub fn new(
        gpu: &Gpu,
        classifier: Classifier,
        test_set: &Dataset,
        progress: &ProgressBar,
    ) -> Result<Evaluator> {
        ensure!(
            (test_set.rows, test_set.cols) == (SIDE, SIDE) && test_set.count >= 2,
            "the reference images ({}) must be at least 2 of {SIDE} x {SIDE} pixels",
            test_set.source
        );
        progress.set_message(format!("embedding the {} reference images", test_set.count));
        let test = embed(gpu, &classifier, &test_set.images, test_set.count, progress);
        let reference =
            FrechetReference::new(Gaussian::fit(&test.features, test_set.count, test.dim));
        Ok(Evaluator { classifier, test, test_count: test_set.count, reference })
    }

    /// The classifier's embedding of `count` images, in chunks; `progress` advances by `count`.
    pub fn embed(
        &self,
        gpu: &Gpu,
        images: &[u8],
        count: usize,
        progress: &ProgressBar,
    ) -> Embedding {
        embed(gpu, &self.classifier, images, count, progress)
    }

    /// The figures of `count` embedded images against the reference.
    pub fn scores(&self, embedding: &Embedding, count: usize) -> Scores {
        let probs = &embedding.probs;
        let class_hist = class_histogram(probs);
        Scores {
            fid: self.reference.distance(&Gaussian::fit(&embedding.features, count, embedding.dim)),
            inception_score: inception_score(probs, count),
            mean_confidence: mean_confidence(probs, count),
            class_hist,
            modes_covered: modes_covered(&class_hist),
        }
    }

    /// The figures of `count` 28 x 28 grey images.
    pub fn score_images(
        &self,
        gpu: &Gpu,
        images: &[u8],
        count: usize,
        progress: &ProgressBar,
    ) -> Scores {
        self.scores(&self.embed(gpu, images, count, progress), count)
    }

    /// The figures of `count` images of the checkpoint's generator from noise seeded by `seed`.
    pub fn score_checkpoint(
        &self,
        gpu: &Gpu,
        ck: &Checkpoint,
        count: usize,
        seed: u32,
        progress: &ProgressBar,
    ) -> Result<Scores> {
        let images = generated_images(gpu, ck, count, seed)?;
        Ok(self.score_images(gpu, &images, count, progress))
    }

    /// The figures of `count` reference images drawn without replacement (all of them when
    /// `count` is their number): FID ~0, the classifier's IS and confidence on real digits.
    pub fn reference_scores(&self, count: usize, seed: u32) -> Scores {
        let rows = sample_rows(self.test_count, count, seed);
        let pick = |values: &[f32], width: usize| -> Vec<f32> {
            rows.iter().flat_map(|&r| &values[r * width..(r + 1) * width]).copied().collect()
        };
        let sample = Embedding {
            features: pick(&self.test.features, self.test.dim),
            probs: pick(&self.test.probs, CLASSES),
            dim: self.test.dim,
        };
        self.scores(&sample, rows.len())
    }

    /// The figures of the scored images beside those of the same number of real test images,
    /// real training images (`training`; the floor a perfect generator reaches at this count)
    /// and uniform noise. `progress` advances by twice `count`.
    pub fn report(
        &self,
        gpu: &Gpu,
        scores: Scores,
        count: usize,
        training: &Dataset,
        seed: u32,
        progress: &ProgressBar,
    ) -> Report {
        let rows = sample_rows(training.count, count, seed);
        let sample: Vec<u8> = rows
            .iter()
            .flat_map(|&r| &training.images[r * IMAGE_LEN..(r + 1) * IMAGE_LEN])
            .copied()
            .collect();
        progress.set_message(format!("embedding {} training images", rows.len()));
        let training_data = self.score_images(gpu, &sample, rows.len(), progress);
        let mut rng = StdRng::seed_from_u64(seed as u64);
        let noise: Vec<u8> = (0..count * IMAGE_LEN).map(|_| rng.random()).collect();
        progress.set_message(format!("embedding {count} noise images"));
        let uniform_noise = self.score_images(gpu, &noise, count, progress);
        Report {
            images: count,
            scores,
            references: References {
                test_data: self.reference_scores(count, seed),
                training_data,
                uniform_noise,
            },
        }
    }
}

fn embed(
    gpu: &Gpu,
    classifier: &Classifier,
    images: &[u8],
    count: usize,
    progress: &ProgressBar,
) -> Embedding {
    assert_eq!(images.len(), count * IMAGE_LEN, "images are not {count} x {SIDE} x {SIDE}");
    let mut all = Embedding { features: Vec::new(), probs: Vec::new(), dim: 0 };
    for chunk in images.chunks(EMBED_CHUNK * IMAGE_LEN) {
        let n = chunk.len() / IMAGE_LEN;
        let part = classifier.embed(gpu, chunk, n);
        all.features.extend_from_slice(&part.features);
        all.probs.extend_from_slice(&part.probs);
        all.dim = part.dim;
        progress.inc(n as u64);
    }
    all
}

/// `count` distinct indices below `total` (all of them, in order, when `count >= total`),
/// drawn with `seed`.
fn sample_rows(total: usize, count: usize, seed: u32) -> Vec<usize> {
    if count >= total {
        return (0..total).collect();
    }
    let mut rows = index::sample(&mut StdRng::seed_from_u64(seed as u64), total, count).into_vec();
    rows.sort_unstable();
    rows
}

/// A scored image set beside its references.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// How many images were scored (and drawn for each reference).
    pub images: usize,
    #[serde(flatten)]
    pub scores: Scores,
    pub references: References,
}

#[derive(Clone, Debug, Serialize)]
pub struct References {
    pub test_data: Scores,
    pub training_data: Scores,
    pub uniform_noise: Scores,
}

impl Report {
    /// A table: the scored images, then the three references.
    pub fn table(&self, what: &str) -> String {
        let row = |name: &str, s: &Scores| {
            let hist = s.class_hist.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ");
            format!(
                "{name:<16} {:>9.2} {:>6.2} {:>11.3} {:>6}   {hist}\n",
                s.fid, s.inception_score, s.mean_confidence, s.modes_covered
            )
        };
        let r = &self.references;
        let mut out = format!(
            "{:<16} {:>9} {:>6} {:>11} {:>6}   class histogram (digits 0-9)\n",
            format!("{} images", self.images),
            "FID",
            "IS",
            "confidence",
            "modes"
        );
        out += &row(what, &self.scores);
        out += &row("test data", &r.test_data);
        out += &row("training data", &r.training_data);
        out += &row("uniform noise", &r.uniform_noise);
        out += "FID against the MNIST test set's classifier features (lower is better; training data \
                is the floor at this count); IS at most 10; modes: digits with >= 5% of the images";
        out
    }
}

/// Refuses a model whose images the digit classifier cannot read.
pub fn check_scorable(spec: &GanSpec) -> Result<()> {
    let [h, w, c] = spec.image;
    ensure!(
        [h, w, c] == [SIDE, SIDE, 1],
        "model {} makes {h}x{w}x{c} images; the digit classifier scores {SIDE}x{SIDE}x1 images only",
        spec.name
    );
    Ok(())
}

/// `count` images of the checkpoint's generator as grey bytes.
pub fn generated_images(gpu: &Gpu, ck: &Checkpoint, count: usize, seed: u32) -> Result<Vec<u8>> {
    check_scorable(&ck.spec)?;
    Ok(images::to_bytes(&generate::generate(gpu, ck, count, seed), ck.spec.recipe.pixel_range))
}

/// 28 x 28 grey images from an IDX3 file (raw or gzip) or a folder of PNGs (in name order),
/// with their count.
pub fn load_images(path: &Path) -> Result<(Vec<u8>, usize)> {
    if path.is_dir() {
        return load_png_folder(path);
    }
    ensure!(
        path.is_file(),
        "{}: no such file or folder; give an IDX3 image file or a folder of {SIDE}x{SIDE} PNGs",
        path.display()
    );
    let images = idx::read_images(path)?;
    ensure!(
        (images.rows, images.cols) == (SIDE, SIDE),
        "{}: images of {} x {} pixels; the digit classifier scores {SIDE} x {SIDE} images",
        path.display(),
        images.rows,
        images.cols
    );
    Ok((images.pixels, images.count))
}

fn load_png_folder(dir: &Path) -> Result<(Vec<u8>, usize)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    ensure!(!files.is_empty(), "{}: no .png files in this folder", dir.display());
    files.sort();
    let mut pixels = Vec::with_capacity(files.len() * IMAGE_LEN);
    for file in &files {
        let image = image::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        ensure!(
            (image.width(), image.height()) == (SIDE as u32, SIDE as u32),
            "{}: {} x {} pixels; the digit classifier scores {SIDE} x {SIDE} images",
            file.display(),
            image.width(),
            image.height()
        );
        pixels.extend(image.to_luma8().into_raw());
    }
    Ok((pixels, files.len()))
}

/// `train --eval-every`: every `every` iterations the figures of `count` generated images
/// (the same noise each time) go into metrics.jsonl.
#[derive(Clone, Debug, Serialize)]
pub struct TrainEval {
    pub every: u64,
    pub count: usize,
    #[serde(skip)]
    pub evaluator: Arc<Evaluator>,
}

impl TrainEval {
    /// The figures of `count` images of the checkpoint's generator from noise seeded by `seed`.
    pub fn score(&self, gpu: &Gpu, ck: &Checkpoint, seed: u32) -> Result<Scores> {
        self.evaluator.score_checkpoint(gpu, ck, self.count, seed, &ProgressBar::hidden())
    }
}

impl Scores {
    /// The metrics.jsonl line of `train --eval-every` at `step`.
    pub fn metrics_line(&self, step: u64) -> serde_json::Value {
        serde_json::json!({
            "step": step, "fid": self.fid, "is": self.inception_score,
            "mean_confidence": self.mean_confidence, "modes_covered": self.modes_covered,
            "class_hist": self.class_hist,
        })
    }

    /// The figures in one line for people.
    pub fn summary(&self) -> String {
        format!(
            "FID {:.2}, IS {:.2}, confidence {:.3}, {} of {CLASSES} digits",
            self.fid, self.inception_score, self.mean_confidence, self.modes_covered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knuth's MMIX LCG, as tools/eval_math_reference.py draws the same numbers.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `count` rows of `dim` correlated features, as the Python script's `correlated`.
    fn correlated(lcg: &mut Lcg, count: usize, dim: usize, shift: f64) -> Vec<f32> {
        let mix: Vec<f64> = (0..dim * dim).map(|_| lcg.next() * 2.0 - 1.0).collect();
        let noise: Vec<f64> = (0..count * dim).map(|_| lcg.next()).collect();
        let mut out = Vec::with_capacity(count * dim);
        for i in 0..count {
            for j in 0..dim {
                let v: f64 = (0..dim).map(|k| noise[i * dim + k] * mix[k * dim + j]).sum();
                out.push((v + shift) as f32);
            }
        }
        out
    }

    fn softmax_rows(lcg: &mut Lcg, count: usize, sharpness: f64) -> Vec<f32> {
        let mut out = Vec::with_capacity(count * CLASSES);
        for _ in 0..count {
            let logits: Vec<f64> = (0..CLASSES).map(|_| lcg.next() * sharpness).collect();
            let top = logits.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
            let sum: f64 = e.iter().sum();
            out.extend(e.iter().map(|v| (v / sum) as f32));
        }
        out
    }

    fn assert_close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs().max(1e-300), "got {got}, want {want}");
    }

    /// Against scipy.linalg.sqrtm on correlated data of different means and covariances
    /// (tools/eval_math_reference.py prints the values).
    #[test]
    fn frechet_distance_matches_scipy() {
        let mut lcg = Lcg(42);
        let a = Gaussian::fit(&correlated(&mut lcg, 50, 6, 0.0), 50, 6);
        let b = Gaussian::fit(&correlated(&mut lcg, 70, 6, 0.3), 70, 6);
        assert_close(frechet_distance(&a, &b), 7.247658548467881, 1e-10);
        assert_close(frechet_distance(&b, &a), 7.247658548467884, 1e-10);
    }

    #[test]
    fn frechet_distance_properties() {
        let mut lcg = Lcg(3);
        for (count, dim) in [(40, 5), (200, 17), (6, 9)] {
            let a = Gaussian::fit(&correlated(&mut lcg, count, dim, 0.0), count, dim);
            let b = Gaussian::fit(&correlated(&mut lcg, count, dim, -0.4), count, dim);
            // Identical inputs, also with a singular covariance (6 samples in 9 dimensions).
            assert!(frechet_distance(&a, &a) < 1e-9 * (1.0 + a.cov[0].abs()), "{count}x{dim}");
            let (ab, ba) = (frechet_distance(&a, &b), frechet_distance(&b, &a));
            assert!(ab > 0.0);
            assert_close(ab, ba, 1e-9);
        }
    }

    /// With commuting (diagonal) covariances the distance is
    /// |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    #[test]
    fn frechet_distance_of_diagonal_gaussians() {
        let diag = |values: &[f64]| {
            let n = values.len();
            let mut cov = vec![0.0; n * n];
            for (i, v) in values.iter().enumerate() {
                cov[i * n + i] = *v;
            }
            cov
        };
        let a = Gaussian { dim: 3, mean: vec![1.0, 2.0, 3.0], cov: diag(&[4.0, 1.0, 0.25]) };
        let b = Gaussian { dim: 3, mean: vec![0.0, 2.0, 5.0], cov: diag(&[1.0, 9.0, 0.0]) };
        let want = 1.0 + 4.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2) + 0.25;
        assert_close(frechet_distance(&a, &b), want, 1e-12);
    }

    /// A V = V diag(L) with V orthonormal, on a random symmetric matrix with eigenvalues of
    /// both signs, and on one that is already diagonal.
    #[test]
    fn jacobi_eigen_decomposes() {
        let mut lcg = Lcg(11);
        let n = 12;
        let mut m: Vec<f64> = (0..n * n).map(|_| lcg.next() * 2.0 - 1.0).collect();
        symmetrize(&mut m, n);
        for matrix in
            [m, (0..n * n).map(|i| if i % (n + 1) == 0 { i as f64 } else { 0.0 }).collect()]
        {
            let (values, vectors) = symmetric_eigen(&matrix, n);
            for k in 0..n {
                for i in 0..n {
                    let av: f64 = (0..n).map(|j| matrix[i * n + j] * vectors[j * n + k]).sum();
                    assert!((av - values[k] * vectors[i * n + k]).abs() < 1e-12, "A v != l v");
                }
                for l in 0..n {
                    let dot: f64 = (0..n).map(|i| vectors[i * n + k] * vectors[i * n + l]).sum();
                    assert!(
                        (dot - if k == l { 1.0 } else { 0.0 }).abs() < 1e-12,
                        "V not orthonormal"
                    );
                }
            }
        }
        // Its square root squares back to the matrix.
        let mut lcg = Lcg(5);
        let g = Gaussian::fit(&correlated(&mut lcg, 30, 7, 0.0), 30, 7);
        let root = psd_sqrt(&g.cov, 7);
        for (x, y) in matmul(&root, &root, 7).iter().zip(&g.cov) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
    }

    #[test]
    fn inception_score_matches_numpy() {
        let probs = softmax_rows(&mut Lcg(7), 40, 6.0);
        assert_close(inception_score(&probs, 40), 2.057543383559545, 1e-10);
    }

    /// One-hot rows spread evenly over k classes score exactly k; identical rows score 1.
    #[test]
    fn inception_score_extremes_and_histogram() {
        let one_hot = |classes: &[usize]| {
            let mut probs = vec![0.0f32; classes.len() * CLASSES];
            for (i, &c) in classes.iter().enumerate() {
                probs[i * CLASSES + c] = 1.0;
            }
            probs
        };
        let all: Vec<usize> = (0..100).map(|i| i % CLASSES).collect();
        let probs = one_hot(&all);
        assert_close(inception_score(&probs, 100), 10.0, 1e-12);
        assert_eq!(class_histogram(&probs), [10; CLASSES]);
        assert_eq!(modes_covered(&class_histogram(&probs)), 10);
        assert_close(mean_confidence(&probs, 100), 1.0, 0.0);
        let three: Vec<usize> = (0..99).map(|i| [2, 5, 7][i % 3]).collect();
        assert_close(inception_score(&one_hot(&three), 99), 3.0, 1e-12);
        let same = vec![0.1f32; 20 * CLASSES];
        assert_close(inception_score(&same, 20), 1.0, 1e-12);
        assert_close(mean_confidence(&same, 20), 0.1, 1e-6);
        // 100 images: 94 sevens, 5 ones (exactly 5%: a mode), 1 three (not one).
        let mut skewed = vec![7; 94];
        skewed.extend([1; 5]);
        skewed.push(3);
        let hist = class_histogram(&one_hot(&skewed));
        assert_eq!((hist[7], hist[1], hist[3]), (94, 5, 1));
        assert_eq!(modes_covered(&hist), 2);
    }
}
