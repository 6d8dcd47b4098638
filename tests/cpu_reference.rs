//! The CPU twins against PyTorch's values (../shared/fixtures/ops.safetensors), against
//! published known answers, and their backward passes against f64 finite differences.

mod common;

use common::{fixture, random_vec, rng};
use gan_gpu::check::{ELEMENTWISE, REDUCTION, Tolerance, compare};
use gan_gpu::cpu;
use gan_gpu::kernels::{Activation, AdamParams, StepUniform};

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    if let Err(e) = compare(name, got, want, tol) {
        panic!("{e}");
    }
}

const ACTIVATIONS: [(&str, Activation); 4] = [
    ("relu", Activation::Relu),
    ("leaky_relu_0.2", Activation::LeakyRelu { alpha: 0.2 }),
    ("tanh", Activation::Tanh),
    ("sigmoid", Activation::Sigmoid),
];

#[test]
fn activations_match_pytorch() {
    for (case, act) in ACTIVATIONS {
        let (x, _) = fixture(&format!("{case}.x"));
        let (y, _) = fixture(&format!("{case}.y"));
        let (gy, _) = fixture(&format!("{case}.gy"));
        let (gx, _) = fixture(&format!("{case}.gx"));
        let mut out = x.clone();
        cpu::activation::activation_forward(&mut out, x.len(), act);
        assert_close(&format!("{case} forward"), &out, &y, ELEMENTWISE);
        let mut grad = gy.clone();
        cpu::activation::activation_backward(&out, &mut grad, x.len(), act);
        assert_close(&format!("{case} backward"), &grad, &gx, ELEMENTWISE);
    }
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let (z, _) = fixture("bce_with_logits.z");
    let (t, _) = fixture("bce_with_logits.t");
    let (y, _) = fixture("bce_with_logits.y");
    let (gy, _) = fixture("bce_with_logits.gy");
    let (gz, _) = fixture("bce_with_logits.gz");
    let n = z.len();
    let mut dz = vec![0.0; n];
    let mut losses = vec![0.0; n];
    // The fixture's y is the mean loss and gz the gradient of y * gy.
    cpu::loss::bce_with_logits(&z, &t, &mut dz, &mut losses, n, gy[0] / n as f32);
    let mean = losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64;
    assert_close("bce_with_logits mean loss", &[mean as f32], &y, ELEMENTWISE);
    assert_close("bce_with_logits gradient", &dz, &gz, ELEMENTWISE);
}

#[test]
fn adam_matches_pytorch() {
    // Hyper-parameters as ops.json lists them for each case.
    let cases = [
        (
            "adam_clip1_s001",
            AdamParams { lr: 4e-4, beta1: 0.9, beta2: 0.999, eps: 1e-7, clip: Some(1.0) },
        ),
        (
            "adam_keras_s003",
            AdamParams { lr: 2e-4, beta1: 0.5, beta2: 0.999, eps: 1e-7, clip: None },
        ),
    ];
    for (case, hp) in cases {
        let (w0, _) = fixture(&format!("{case}.w0"));
        let (w3, _) = fixture(&format!("{case}.w3"));
        let len = w0.len();
        let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; len], vec![0.0; len]);
        for t in 0..3 {
            let (grad, _) = fixture(&format!("{case}.grad{t}"));
            let step = StepUniform { step: t + 1, ..Default::default() };
            cpu::optim::adam(&mut w, &grad, &mut m, &mut v, len, hp, &step);
        }
        assert_close(case, &w, &w3, ELEMENTWISE);
        // The updates themselves (about 3 lr), which the weights' tolerance would blur.
        let delta = |w: &[f32]| -> Vec<f32> { w.iter().zip(&w0).map(|(a, b)| a - b).collect() };
        assert_close(&format!("{case} update"), &delta(&w), &delta(&w3), ELEMENTWISE);
    }
}

#[test]
fn bias_grad_matches_pytorch() {
    for case in ["linear_100_128", "linear_128_1", "linear_128_784", "linear_784_128"] {
        let (gy, shape) = fixture(&format!("{case}.gy"));
        let (gb, _) = fixture(&format!("{case}.gb"));
        let (rows, cols) = (shape[0], shape[1]);
        let mut db = vec![f32::NAN; cols];
        cpu::bias::bias_grad(&gy, &mut db, rows, cols);
        assert_close(case, &db, &gb, REDUCTION);
    }
}

#[test]
fn threefry_matches_random123_known_answers() {
    // Random123's kat_vectors for threefry2x32_20: (counter, key) -> output.
    let known = [
        ([0, 0], [0, 0], [0x6B20_0159, 0x99BA_4EFE]),
        ([u32::MAX, u32::MAX], [u32::MAX, u32::MAX], [0x1CB9_96FC, 0xBB00_2BE7]),
        ([0x243F_6A88, 0x85A3_08D3], [0x1319_8A2E, 0x0370_7344], [0xC492_3A9C, 0x483D_F7A0]),
    ];
    for (counter, key, want) in known {
        assert_eq!(cpu::rng::threefry2x32(key, counter), want, "counter {counter:x?} key {key:x?}");
    }
}

#[test]
fn gather_rows_picks_rows_and_scales() {
    let images: Vec<u8> = vec![0, 1, 2, 10, 11, 12, 20, 21, 255];
    let mut out = vec![f32::NAN; 9];
    cpu::gather::gather_rows(&images, &[2, 0, 2], &mut out, 3, 3, 0.5, -1.0);
    assert_eq!(out, [9.0, 9.5, 126.5, -1.0, -0.5, 0.0, 9.0, 9.5, 126.5]);
}

/// f64 central differences of a scalar function of one f32, stepping to the f32 neighbours
/// x -+ h actually evaluated.
fn central_difference(x: f32, h: f32, f: impl Fn(f32) -> f32) -> f64 {
    let (lo, hi) = (x - h, x + h);
    (f(hi) as f64 - f(lo) as f64) / (hi as f64 - lo as f64)
}

/// Finite differences of f32 functions with a step of 1e-2: rounding contributes about
/// 3e-5 and truncation (h^2/6 times the third derivative, at most 2 for tanh) about 3e-5.
const FINITE_DIFFERENCE: Tolerance = Tolerance { abs: 2e-4, rel: 0.0 };
const H: f32 = 1e-2;

#[test]
fn activation_backward_matches_finite_differences() {
    let mut r = rng(11);
    let len = 200;
    // Away from ReLU's kink, where the derivative has no finite difference.
    let x: Vec<f32> = random_vec(&mut r, len, -4.0, 4.0)
        .into_iter()
        .map(|v| if v.abs() < 2.0 * H { v + 4.0 * H.copysign(v) } else { v })
        .collect();
    let gy = random_vec(&mut r, len, -1.0, 1.0);
    for (name, act) in ACTIVATIONS {
        let forward = |v: f32| {
            let mut one = [v];
            cpu::activation::activation_forward(&mut one, 1, act);
            one[0]
        };
        let want: Vec<f32> = x
            .iter()
            .zip(&gy)
            .map(|(&xi, &g)| (g as f64 * central_difference(xi, H, forward)) as f32)
            .collect();
        let mut y = x.clone();
        cpu::activation::activation_forward(&mut y, len, act);
        let mut got = gy.clone();
        cpu::activation::activation_backward(&y, &mut got, len, act);
        assert_close(name, &got, &want, FINITE_DIFFERENCE);
    }
}

#[test]
fn bce_gradient_matches_finite_differences() {
    let mut r = rng(12);
    let n = 200;
    let z = random_vec(&mut r, n, -6.0, 6.0);
    let t = random_vec(&mut r, n, 0.0, 1.0);
    let grad_scale = 0.5;
    let loss = |zi: f32, ti: f32| {
        let (mut dz, mut l) = ([0.0], [0.0]);
        cpu::loss::bce_with_logits(&[zi], &[ti], &mut dz, &mut l, 1, grad_scale);
        l[0]
    };
    let want: Vec<f32> = z
        .iter()
        .zip(&t)
        .map(|(&zi, &ti)| (grad_scale as f64 * central_difference(zi, H, |v| loss(v, ti))) as f32)
        .collect();
    let (mut dz, mut losses) = (vec![f32::NAN; n], vec![f32::NAN; n]);
    cpu::loss::bce_with_logits(&z, &t, &mut dz, &mut losses, n, grad_scale);
    assert_close("bce_with_logits gradient", &dz, &want, FINITE_DIFFERENCE);
}
