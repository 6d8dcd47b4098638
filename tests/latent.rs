//! `gan-gpu interpolate`'s library side: a seed's latent vector is the noise `generate` draws
//! for image 0, a walk's ends are `generate`'s images of its seeds, slerp keeps to the great
//! circle, and latent arithmetic is the arithmetic the CPU does on the CPU twin's latents.

mod common;

use gan_gpu::check::{ELEMENTWISE, compare};
use gan_gpu::checkpoint::Checkpoint;
use gan_gpu::cpu;
use gan_gpu::data::{self, DatasetName};
use gan_gpu::generate::{generate, generate_from_latents, latent};
use gan_gpu::gpu::Gpu;
use gan_gpu::kernels::StepUniform;
use gan_gpu::latent::{self, Expression, Term};
use gan_gpu::nn::gan::{self, Noise};
use gan_gpu::train::Trainer;
use std::sync::Arc;

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    if let Err(e) = compare(name, got, want, ELEMENTWISE) {
        panic!("{e}");
    }
}

/// An mlp generator after 3 training steps, with the given noise.
fn checkpoint(gpu: &Arc<Gpu>, noise: Noise) -> Checkpoint {
    let dataset = data::load_training_set(DatasetName::Mnist, None).expect("MNIST (GAN_GPU_DATA)");
    let mut spec = gan::preset("mlp").unwrap();
    spec.recipe.batch = 16;
    spec.recipe.noise = noise;
    let mut trainer = Trainer::new(gpu.clone(), spec, &dataset, 2, None).unwrap();
    for _ in 0..3 {
        trainer.step(false);
    }
    trainer.checkpoint()
}

const NORMAL: Noise = Noise::Normal { mean: 0.0, std: 1.0 };
const UNIFORM: Noise = Noise::Uniform { low: -1.0, high: 1.0 };

/// What the CPU twin of the RNG draws for image 0 of `generate` with `seed`.
fn cpu_latent(noise: Noise, len: usize, seed: u32) -> Vec<f32> {
    let mut out = vec![0.0; len];
    let step = StepUniform::new(0, seed);
    match noise {
        Noise::Uniform { low, high } => cpu::rng::rng_uniform(&mut out, len, low, high, 0, &step),
        Noise::Normal { mean, std } => cpu::rng::rng_normal(&mut out, len, mean, std, 0, &step),
    }
    out
}

#[test]
fn a_walks_ends_are_generates_images_of_its_seeds() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    let ck = checkpoint(gpu, NORMAL);
    let steps = 5;
    let image_len = ck.spec.image_len();
    for spherical in [false, true] {
        let strip = latent::interpolation(gpu, &ck, 3, 8, steps, spherical).unwrap();
        assert_eq!(strip.len(), steps * image_len);
        let images: Vec<&[f32]> = strip.chunks_exact(image_len).collect();
        // Image 0 of `generate` with a seed, made in a batch of the same size as the strip's.
        let first = &generate(gpu, &ck, steps, 3)[..image_len];
        let last = &generate(gpu, &ck, steps, 8)[..image_len];
        assert_eq!(images[0], first, "slerp {spherical}: the first image is not seed 3's");
        assert_eq!(images[steps - 1], last, "slerp {spherical}: the last image is not seed 8's");
        let middle = images[steps / 2];
        assert!(middle != first && middle != last, "slerp {spherical}: the walk stands still");
    }
    // Slerp is refused where the noise is not normal.
    let ck = checkpoint(gpu, UNIFORM);
    let err = latent::interpolation(gpu, &ck, 3, 8, steps, true).unwrap_err();
    assert!(err.to_string().contains("--slerp is for normal noise"), "{err}");
    let err = latent::interpolation(gpu, &ck, 3, 8, 1, false).unwrap_err();
    assert!(err.to_string().contains("--steps 1"), "{err}");
}

#[test]
fn a_seeds_latent_is_the_noise_of_the_rng_twin() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    for noise in [NORMAL, UNIFORM] {
        let mut spec = gan::preset("mlp").unwrap();
        spec.recipe.noise = noise;
        for seed in [0, 7, u32::MAX] {
            let got = latent(gpu, &spec, seed);
            let want = cpu_latent(noise, spec.noise_dim(), seed);
            assert_close(&format!("{noise:?} seed {seed}"), &got, &want);
        }
    }
}

fn angle(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    (dot / (norm(a) * norm(b))).clamp(-1.0, 1.0).acos()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()
}

/// Between two vectors of one length, slerp's point at t is t of the way round the angle
/// between them and keeps their length; lerp's midpoint is their mean and is shorter.
#[test]
fn slerp_follows_the_great_circle() {
    let (a, b) = (cpu_latent(NORMAL, 100, 1), cpu_latent(NORMAL, 100, 2));
    let scale = (norm(&a) / norm(&b)) as f32;
    let b: Vec<f32> = b.iter().map(|x| x * scale).collect();
    let omega = angle(&a, &b);
    for t in [0.1, 0.5, 0.75] {
        let p = latent::slerp(&a, &b, t);
        assert!((angle(&a, &p) - t * omega).abs() < 1e-5, "t {t}: off the circle");
        assert!((angle(&p, &b) - (1.0 - t) * omega).abs() < 1e-5, "t {t}: off the circle");
        assert!((norm(&p) / norm(&a) - 1.0).abs() < 1e-5, "t {t}: length changed");
    }
    let mid = latent::lerp(&a, &b, 0.5);
    let mean: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect();
    assert_close("lerp midpoint", &mid, &mean);
    assert!(norm(&mid) < 0.9 * norm(&a));
    // Both paths start and end exactly at their ends.
    for spherical in [false, true] {
        let path = latent::path(&a, &b, 4, spherical);
        assert_eq!((&path[..100], &path[300..]), (&a[..], &b[..]), "slerp {spherical}");
    }
}

#[test]
fn expressions_parse() {
    let term = |sign: f32, name: &str| Term { sign, name: name.into() };
    assert_eq!(
        latent::parse_expr("a + b - c").unwrap(),
        [term(1.0, "a"), term(1.0, "b"), term(-1.0, "c")]
    );
    assert_eq!(
        latent::parse_expr("-smiling_1+neutral-x2").unwrap(),
        [term(-1.0, "smiling_1"), term(1.0, "neutral"), term(-1.0, "x2")]
    );
    assert_eq!(latent::parse_point("a=3, 17,40").unwrap(), ("a".to_string(), vec![3, 17, 40]));
    for bad in ["", "a +", "a b", "a + + b", "a * b", "2a", "+"] {
        assert!(latent::parse_expr(bad).is_err(), "{bad:?} parsed");
    }
    for bad in ["a", "a=", "a=1,", "=3", "1a=3", "a=-1", "a=4294967296"] {
        assert!(latent::parse_point(bad).is_err(), "{bad:?} parsed");
    }
}

/// "a + b - c" with points that are means of seeds: the latent vectors of the strip (each
/// term's point, then the sum) are what the CPU computes from the RNG twin's latents, and the
/// images are the generator's of those vectors.
#[test]
fn latent_arithmetic_is_the_cpu_arithmetic() {
    let gpu = &common::gpus()[0];
    let _gl = common::serialize_gl(gpu);
    for noise in [NORMAL, UNIFORM] {
        let ck = checkpoint(gpu, noise);
        let nz = ck.spec.noise_dim();
        let points = ["c=7,9".to_string(), "a=3,17,40".into(), "b=5".into()];
        let expr = Expression::parse("a + b - c", &points).unwrap();
        let mean = |seeds: &[u32]| -> Vec<f64> {
            let mut sum = vec![0.0; nz];
            for &seed in seeds {
                for (s, x) in sum.iter_mut().zip(cpu_latent(noise, nz, seed)) {
                    *s += x as f64;
                }
            }
            sum.iter().map(|s| s / seeds.len() as f64).collect()
        };
        let (a, b, c) = (mean(&[3, 17, 40]), mean(&[5]), mean(&[7, 9]));
        let value: Vec<f64> = (0..nz).map(|i| a[i] + b[i] - c[i]).collect();
        let want: Vec<f32> = [a, b, c, value].concat().iter().map(|&x| x as f32).collect();
        let got = expr.latents(gpu, &ck.spec);
        assert_close(&format!("{noise:?}: a, b, c, a + b - c"), &got, &want);
        let images = latent::arithmetic(gpu, &ck, &expr);
        assert_eq!(images.len(), 4 * ck.spec.image_len());
        // The GPU's latents differ from the CPU's by rounding, which the generator carries
        // through (4e-7 on lavapipe).
        let from_cpu = generate_from_latents(gpu, &ck, &want);
        assert_close(&format!("{noise:?}: images"), &images, &from_cpu);
    }
}
