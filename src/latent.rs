//! Walks and arithmetic in the generator's latent space (`gan-gpu interpolate`): the latent
//! vector of a seed is the noise [`generate`](crate::generate::generate) draws for image 0 with
//! it; points are seeds or means of seeds; strips of the images along a path or of the terms
//! of a sum.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

use crate::checkpoint::Checkpoint;
use crate::generate::{generate_from_latents, latent};
use crate::gpu::Gpu;
use crate::images;
use crate::nn::gan::{GanSpec, Noise};

/// A seed as the user wrote it, or a clear error naming where it came from.
pub fn parse_seed(text: &str, origin: &str) -> Result<u32> {
    text.trim().parse().map_err(|_| {
        anyhow::anyhow!("{origin}: {text:?} is not a seed (a whole number from 0 to {})", u32::MAX)
    })
}

/// `(1 - t) a + t b`: exactly `a` at t = 0 and exactly `b` at t = 1.
pub fn lerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| ((1.0 - t) * x as f64 + t * y as f64) as f32).collect()
}

/// Spherical interpolation: along the great circle from `a` to `b` (radii interpolated
/// linearly), which keeps a normal latent vector at the length such vectors have, where the
/// straight line passes closer to the origin. Exactly `a` at t = 0 and `b` at t = 1; `lerp`
/// where the two are (anti)parallel and the circle is not defined.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let cos = (dot / (norm(a) * norm(b))).clamp(-1.0, 1.0);
    let omega = cos.acos();
    let sin = omega.sin();
    if !sin.is_finite() || sin <= 1e-6 {
        return lerp(a, b, t);
    }
    let (wa, wb) = (((1.0 - t) * omega).sin() / sin, (t * omega).sin() / sin);
    a.iter().zip(b).map(|(&x, &y)| (wa * x as f64 + wb * y as f64) as f32).collect()
}

/// `steps` latent vectors from `a` to `b`, both included, evenly spaced in t.
pub fn path(a: &[f32], b: &[f32], steps: usize, spherical: bool) -> Vec<f32> {
    assert!(steps >= 2, "a path has two ends");
    (0..steps)
        .flat_map(|i| {
            let t = i as f64 / (steps - 1) as f64;
            if spherical { slerp(a, b, t) } else { lerp(a, b, t) }
        })
        .collect()
}

/// One term of a latent expression: a named point, added (+1) or subtracted (-1).
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub sign: f32,
    pub name: String,
}

fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// "a + b - c" (an optional sign first): names of points joined by + and -.
pub fn parse_expr(text: &str) -> Result<Vec<Term>> {
    let bad = |why: String| anyhow::anyhow!("--expr {text:?}: {why}");
    let mut terms = Vec::new();
    let mut sign = None;
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if c == '+' || c == '-' {
            if sign.is_some() {
                return Err(bad(format!("two signs in a row before {rest:?}")));
            }
            sign = Some(if c == '+' { 1.0 } else { -1.0 });
            rest = rest[1..].trim_start();
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '+' || c == '-');
        let word = &rest[..end.unwrap_or(rest.len())];
        if !is_name(word) {
            return Err(bad(format!(
                "{word:?} is not a point name (letters, digits and _, not starting with a digit)"
            )));
        }
        let sign = match (sign.take(), terms.is_empty()) {
            (Some(s), _) => s,
            (None, true) => 1.0,
            (None, false) => return Err(bad(format!("+ or - expected before {word:?}"))),
        };
        terms.push(Term { sign, name: word.to_string() });
        rest = rest[word.len()..].trim_start();
    }
    if sign.is_some() {
        return Err(bad("a point name expected after the last sign".into()));
    }
    if terms.is_empty() {
        return Err(bad(
            "no point in it; write names joined by + and -, such as \"a + b - c\"".into()
        ));
    }
    Ok(terms)
}

/// "NAME=SEED" or "NAME=SEED,SEED,...": a point at a seed's latent vector or at the mean of
/// several.
pub fn parse_point(text: &str) -> Result<(String, Vec<u32>)> {
    let origin = format!("--point {text:?}");
    let (name, seeds) =
        text.split_once('=').with_context(|| format!("{origin}: write NAME=SEED[,SEED...]"))?;
    let name = name.trim();
    ensure!(
        is_name(name),
        "{origin}: {name:?} is not a point name (letters, digits and _, not starting with a digit)"
    );
    let seeds = seeds.split(',').map(|s| parse_seed(s, &origin)).collect::<Result<Vec<_>>>()?;
    Ok((name.to_string(), seeds))
}

/// The mean of equally long vectors.
pub fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut sum = vec![0.0f32; vectors[0].len()];
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    let n = vectors.len() as f32;
    sum.iter().map(|s| s / n).collect()
}

/// A sum of named points with signs, each point a seed or the mean of several.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    pub terms: Vec<Term>,
    /// (name, seeds) of every point the terms name, each once.
    pub points: Vec<(String, Vec<u32>)>,
}

impl Expression {
    /// `--expr` and its `--point`s, checked against each other: every name the expression
    /// uses is defined once, and every point defined is used.
    pub fn parse(expr: &str, points: &[String]) -> Result<Expression> {
        let terms = parse_expr(expr)?;
        let points = points.iter().map(|p| parse_point(p)).collect::<Result<Vec<_>>>()?;
        for (i, (name, _)) in points.iter().enumerate() {
            ensure!(points[..i].iter().all(|(n, _)| n != name), "--point {name} is given twice");
            ensure!(
                terms.iter().any(|t| &t.name == name),
                "--point {name} is not used by --expr {expr:?}: drop it, or check its spelling"
            );
        }
        for term in &terms {
            ensure!(
                points.iter().any(|(n, _)| n == &term.name),
                "--expr {expr:?} names {:?}, which no --point defines: add --point {}=SEED",
                term.name,
                term.name
            );
        }
        Ok(Expression { terms, points })
    }

    /// The latent vectors of the strip: each term's point (the mean of its seeds' latent
    /// vectors), then the sum of the terms with their signs.
    pub fn latents(&self, gpu: &Gpu, spec: &GanSpec) -> Vec<f32> {
        let at: HashMap<&str, Vec<f32>> = self
            .points
            .iter()
            .map(|(name, seeds)| {
                let vectors: Vec<Vec<f32>> = seeds.iter().map(|&s| latent(gpu, spec, s)).collect();
                (name.as_str(), mean(&vectors))
            })
            .collect();
        let mut sum = vec![0.0f32; spec.noise_dim()];
        let mut strip = Vec::new();
        for term in &self.terms {
            let point = &at[term.name.as_str()];
            for (s, x) in sum.iter_mut().zip(point) {
                *s += term.sign * x;
            }
            strip.extend(point);
        }
        strip.extend(sum);
        strip
    }
}

/// The images along the path between two seeds' latent vectors, `steps` of them.
pub fn interpolation(
    gpu: &Gpu,
    ck: &Checkpoint,
    from: u32,
    to: u32,
    steps: usize,
    spherical: bool,
) -> Result<Vec<f32>> {
    ensure!(steps >= 2, "--steps {steps}: a path needs at least 2 steps, its two ends");
    if spherical {
        ensure!(
            matches!(ck.spec.recipe.noise, Noise::Normal { .. }),
            "--slerp is for normal noise, and model {} draws uniform noise: drop --slerp",
            ck.spec.name
        );
    }
    let (a, b) = (latent(gpu, &ck.spec, from), latent(gpu, &ck.spec, to));
    Ok(generate_from_latents(gpu, ck, &path(&a, &b, steps, spherical)))
}

/// The images of each term's point, then of the expression's value.
pub fn arithmetic(gpu: &Gpu, ck: &Checkpoint, expr: &Expression) -> Vec<f32> {
    generate_from_latents(gpu, ck, &expr.latents(gpu, &ck.spec))
}

/// Frames of the animation are this many times the image's size, nearest-neighbour.
const GIF_SCALE: u32 = 4;
/// Milliseconds each frame of the animation shows.
const GIF_FRAME_MS: u32 = 100;

/// Writes OUT.png, the images in one row, and with `animate` OUT.gif, the images as frames
/// there and back again, looping.
pub fn write_strip(
    ck: &Checkpoint,
    pixels: &[f32],
    out: &Path,
    animate: bool,
) -> Result<Vec<PathBuf>> {
    let bytes = images::to_bytes(pixels, ck.spec.recipe.pixel_range);
    let [h, w, _] = ck.spec.image;
    let count = bytes.len() / (h * w);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let png = out.with_extension("png");
    images::save_strip(&png, &bytes, count, h, w)?;
    let mut written = vec![png];
    if animate {
        let gif = out.with_extension("gif");
        let there_and_back: Vec<usize> = (0..count).chain((1..count - 1).rev()).collect();
        images::save_gif(&gif, &bytes, &there_and_back, h, w, GIF_SCALE, GIF_FRAME_MS)?;
        written.push(gif);
    }
    Ok(written)
}
