//! The CPU twins against PyTorch's values (../shared/fixtures/ops.safetensors), against
//! published known answers, and their backward passes against f64 finite differences.

mod common;

use common::{fixture, random_vec, rng};
use gan_gpu::check::{ELEMENTWISE, REDUCTION, Tolerance, compare};
use gan_gpu::cpu;
use gan_gpu::kernels::optim::RmsPropParams;
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
fn rmsprop_matches_pytorch() {
    // As ops.json lists the case.
    let case = "rmsprop_clip1_s001";
    let hp = RmsPropParams { lr: 8e-4, rho: 0.9, eps: 1e-7, clip: Some(1.0) };
    let (w0, _) = fixture(&format!("{case}.w0"));
    let (w3, _) = fixture(&format!("{case}.w3"));
    let len = w0.len();
    let (mut w, mut v) = (w0.clone(), vec![0.0; len]);
    for t in 0..3 {
        let (grad, _) = fixture(&format!("{case}.grad{t}"));
        cpu::optim::rmsprop(&mut w, &grad, &mut v, len, hp);
    }
    assert_close(case, &w, &w3, ELEMENTWISE);
    let delta = |w: &[f32]| -> Vec<f32> { w.iter().zip(&w0).map(|(a, b)| a - b).collect() };
    assert_close(&format!("{case} update"), &delta(&w), &delta(&w3), ELEMENTWISE);
}

/// A fixture tensor in the kernels' layout: NCHW maps become NHWC, anything else stays.
fn fixture_nhwc(name: &str) -> (Vec<f32>, Vec<usize>) {
    let (data, shape) = fixture(name);
    let &[n, c, h, w] = shape.as_slice() else {
        return (data, shape);
    };
    let mut out = vec![f32::NAN; data.len()];
    for (i, &v) in data.iter().enumerate() {
        let (b, ch, y, x) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
        out[((b * h + y) * w + x) * c + ch] = v;
    }
    (out, vec![n, h, w, c])
}

#[test]
fn avg_pool_and_upsample_match_pytorch() {
    type Pass = fn(&[f32], &mut [f32], usize, usize, usize, usize);
    let cases: [(&str, Pass, Pass); 2] = [
        ("avgpool_2x2", cpu::pool::avg_pool2x2, cpu::pool::avg_pool2x2_backward),
        ("upsample_nearest_x2", cpu::pool::upsample2x, cpu::pool::upsample2x_backward),
    ];
    for (case, forward, backward) in cases {
        let (x, shape) = fixture_nhwc(&format!("{case}.x"));
        let (y, _) = fixture_nhwc(&format!("{case}.y"));
        let (gy, _) = fixture_nhwc(&format!("{case}.gy"));
        let (gx, _) = fixture_nhwc(&format!("{case}.gx"));
        let [b, h, w, c] = shape[..] else { unreachable!() };
        let mut out = vec![f32::NAN; y.len()];
        forward(&x, &mut out, b, h, w, c);
        assert_close(&format!("{case} forward"), &out, &y, ELEMENTWISE);
        let mut grad = vec![f32::NAN; x.len()];
        backward(&gy, &mut grad, b, h, w, c);
        assert_close(&format!("{case} backward"), &grad, &gx, ELEMENTWISE);
    }
}

#[test]
fn batch_norm_matches_pytorch() {
    // Keras's eps and momentum, as ops.json lists them.
    let (eps, momentum) = (1e-3, 0.9);
    for case in ["batchnorm_train_dense", "batchnorm_train_nchw"] {
        let get = |t: &str| fixture_nhwc(&format!("{case}.{t}")).0;
        let (x, shape) = fixture_nhwc(&format!("{case}.x"));
        let cols = *shape.last().unwrap();
        let rows = x.len() / cols;
        let (gamma, beta, gy) = (get("gamma"), get("beta"), get("gy"));
        let mut y = vec![f32::NAN; x.len()];
        let (mut mean, mut var) = (vec![f32::NAN; cols], vec![f32::NAN; cols]);
        for (unbiased, want_var) in [(true, "running_var_new"), (false, "running_var_new_biased")] {
            let (mut running_mean, mut running_var) = (get("running_mean"), get("running_var"));
            cpu::batchnorm::batch_norm_train(
                &x,
                &mut y,
                &gamma,
                &beta,
                &mut mean,
                &mut var,
                &mut running_mean,
                &mut running_var,
                rows,
                cols,
                eps,
                momentum,
                unbiased,
            );
            assert_close(&format!("{case} y"), &y, &get("y"), REDUCTION);
            let name = format!("{case} running mean");
            assert_close(&name, &running_mean, &get("running_mean_new"), REDUCTION);
            assert_close(&format!("{case} {want_var}"), &running_var, &get(want_var), REDUCTION);
        }
        let mut dx = vec![f32::NAN; x.len()];
        let (mut dgamma, mut dbeta) = (vec![f32::NAN; cols], vec![f32::NAN; cols]);
        cpu::batchnorm::batch_norm_backward(
            &x,
            &gy,
            &gamma,
            &mean,
            &var,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
            rows,
            cols,
            eps,
        );
        assert_close(&format!("{case} gx"), &dx, &get("gx"), REDUCTION);
        assert_close(&format!("{case} ggamma"), &dgamma, &get("ggamma"), REDUCTION);
        assert_close(&format!("{case} gbeta"), &dbeta, &get("gbeta"), REDUCTION);
    }
}

#[test]
fn bias_grad_matches_pytorch() {
    for case in ["linear_100_128", "linear_128_1", "linear_128_784", "linear_784_128"] {
        let (gy, shape) = fixture(&format!("{case}.gy"));
        let (gb, _) = fixture(&format!("{case}.gb"));
        let (rows, cols) = (shape[0], shape[1]);
        let mut db = vec![f32::NAN; cols];
        cpu::bias::bias_grad(&gy, &mut db, rows, cols, false);
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
    cpu::gather::gather_rows(&images, 0, 3, &[2, 0, 2], &mut out, 3, 3, 0.5, -1.0);
    assert_eq!(out, [9.0, 9.5, 126.5, -1.0, -0.5, 0.0, 9.0, 9.5, 126.5]);
    // A shard holding rows 1..3 fills the rows it holds and leaves row 0's outputs alone.
    let mut out = vec![f32::NAN; 9];
    cpu::gather::gather_rows(&images[3..], 1, 2, &[2, 0, 1], &mut out, 3, 3, 0.5, -1.0);
    assert_eq!(out[..3], [9.0, 9.5, 126.5]);
    assert!(out[3..6].iter().all(|v| v.is_nan()));
    assert_eq!(out[6..], [4.0, 4.5, 5.0]);
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

/// sum(y * gy) in f64: the loss whose gradient a backward pass given gy computes.
fn weighted_sum(y: &[f32], gy: &[f32]) -> f64 {
    y.iter().zip(gy).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// The gradient of `loss` at `x` by f64 central differences, one element at a time.
fn numerical_gradient(x: &[f32], loss: impl Fn(&[f32]) -> f64) -> Vec<f32> {
    let mut moved = x.to_vec();
    (0..x.len())
        .map(|j| {
            let derivative = central_difference_f64(x[j], H, |v| {
                moved[j] = v;
                loss(&moved)
            });
            moved[j] = x[j];
            derivative as f32
        })
        .collect()
}

/// As [`central_difference`], for a loss already in f64 (a sum over many outputs, whose
/// rounding to f32 would swamp the difference).
fn central_difference_f64(x: f32, h: f32, mut f: impl FnMut(f32) -> f64) -> f64 {
    let (lo, hi) = (x - h, x + h);
    (f(hi) - f(lo)) / (hi as f64 - lo as f64)
}

#[test]
fn pool_and_upsample_backward_match_finite_differences() {
    let mut r = rng(13);
    // Odd sizes, so that pooling drops a row and a column.
    let (b, h, w, c) = (2, 5, 7, 3);
    let x = random_vec(&mut r, b * h * w * c, -1.0, 1.0);
    let pooled = b * (h / 2) * (w / 2) * c;
    let gy = random_vec(&mut r, pooled, -1.0, 1.0);
    let want = numerical_gradient(&x, |x| {
        let mut y = vec![0.0; pooled];
        cpu::pool::avg_pool2x2(x, &mut y, b, h, w, c);
        weighted_sum(&y, &gy)
    });
    let mut got = vec![f32::NAN; x.len()];
    cpu::pool::avg_pool2x2_backward(&gy, &mut got, b, h, w, c);
    assert_close("avg_pool2x2_backward", &got, &want, FINITE_DIFFERENCE);

    let gy = random_vec(&mut r, 4 * x.len(), -1.0, 1.0);
    let want = numerical_gradient(&x, |x| {
        let mut y = vec![0.0; 4 * x.len()];
        cpu::pool::upsample2x(x, &mut y, b, h, w, c);
        weighted_sum(&y, &gy)
    });
    let mut got = vec![f32::NAN; x.len()];
    cpu::pool::upsample2x_backward(&gy, &mut got, b, h, w, c);
    assert_close("upsample2x_backward", &got, &want, FINITE_DIFFERENCE);
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    let mut r = rng(14);
    let (rows, cols, eps) = (12, 3, 1e-3);
    // Columns with means away from zero and standard deviations about 1.
    let x: Vec<f32> = random_vec(&mut r, rows * cols, -2.0, 2.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v + (i % cols) as f32)
        .collect();
    let gamma = random_vec(&mut r, cols, 0.5, 1.5);
    let beta = random_vec(&mut r, cols, -1.0, 1.0);
    let gy = random_vec(&mut r, rows * cols, -1.0, 1.0);
    let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        let mut y = vec![0.0; rows * cols];
        let [mut mean, mut var, mut running_mean, mut running_var] =
            [0; 4].map(|_| vec![0.0; cols]);
        cpu::batchnorm::batch_norm_train(
            x,
            &mut y,
            gamma,
            beta,
            &mut mean,
            &mut var,
            &mut running_mean,
            &mut running_var,
            rows,
            cols,
            eps,
            0.9,
            false,
        );
        weighted_sum(&y, &gy)
    };
    let want_dx = numerical_gradient(&x, |x| loss(x, &gamma, &beta));
    let want_dgamma = numerical_gradient(&gamma, |g| loss(&x, g, &beta));
    let want_dbeta = numerical_gradient(&beta, |b| loss(&x, &gamma, b));

    let mut y = vec![0.0; rows * cols];
    let [mut mean, mut var, mut running_mean, mut running_var] = [0; 4].map(|_| vec![0.0; cols]);
    cpu::batchnorm::batch_norm_train(
        &x,
        &mut y,
        &gamma,
        &beta,
        &mut mean,
        &mut var,
        &mut running_mean,
        &mut running_var,
        rows,
        cols,
        eps,
        0.9,
        false,
    );
    let mut dx = vec![f32::NAN; rows * cols];
    let (mut dgamma, mut dbeta) = (vec![f32::NAN; cols], vec![f32::NAN; cols]);
    cpu::batchnorm::batch_norm_backward(
        &x,
        &gy,
        &gamma,
        &mean,
        &var,
        &mut dx,
        &mut dgamma,
        &mut dbeta,
        rows,
        cols,
        eps,
    );
    assert_close("batch norm dx", &dx, &want_dx, FINITE_DIFFERENCE);
    assert_close("batch norm dgamma", &dgamma, &want_dgamma, FINITE_DIFFERENCE);
    assert_close("batch norm dbeta", &dbeta, &want_dbeta, FINITE_DIFFERENCE);
}

#[test]
fn softmax_cross_entropy_matches_known_answers() {
    // PyTorch's F.cross_entropy (reduction none) in f64 on two rows, the second one far past
    // exp's range in f32; its gradient of the summed loss.
    let z = [1.0, 2.0, 3.0, 1000.0, 0.0, -1000.0];
    let labels = [0, 1];
    let (mut dz, mut losses) = ([f32::NAN; 6], [f32::NAN; 2]);
    cpu::loss::softmax_cross_entropy(&z, &labels, &mut dz, &mut losses, 2, 3, 1.0);
    assert_close("softmax cross-entropy", &losses, &[2.407_606, 1000.0], ELEMENTWISE);
    let want_dz = [-0.909_969_4, 0.244_728_47, 0.665_241, 1.0, -1.0, 0.0];
    assert_close("softmax cross-entropy gradient", &dz, &want_dz, ELEMENTWISE);
    let mut probs = [f32::NAN; 6];
    cpu::loss::softmax(&z, &mut probs, 2, 3);
    let want_probs = [0.090_030_57, 0.244_728_47, 0.665_241, 1.0, 0.0, 0.0];
    assert_close("softmax", &probs, &want_probs, ELEMENTWISE);
}

#[test]
fn softmax_cross_entropy_matches_f64_and_finite_differences() {
    let mut r = rng(14);
    let (rows, classes) = (40, 7);
    let z = random_vec(&mut r, rows * classes, -5.0, 5.0);
    let labels: Vec<u32> = (0..rows).map(|i| (i % classes) as u32).collect();
    let grad_scale = 0.25;
    let (mut dz, mut losses) = (vec![f32::NAN; rows * classes], vec![f32::NAN; rows]);
    cpu::loss::softmax_cross_entropy(&z, &labels, &mut dz, &mut losses, rows, classes, grad_scale);
    // The loss straight from its definition in f64, log(sum(exp(z))) - z[label].
    let loss_f64 = |row: &[f32], label: usize| -> f64 {
        row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln() - row[label] as f64
    };
    let want_losses: Vec<f32> = (0..rows)
        .map(|i| loss_f64(&z[i * classes..][..classes], labels[i] as usize) as f32)
        .collect();
    assert_close("softmax cross-entropy losses", &losses, &want_losses, ELEMENTWISE);
    // The gradient of the f32 loss by central differences, one logit at a time.
    let mut want_dz = vec![0.0; rows * classes];
    for i in 0..rows {
        for j in 0..classes {
            let loss = |v: f32| {
                let mut row = z[i * classes..][..classes].to_vec();
                row[j] = v;
                let (mut d, mut l) = (vec![0.0; classes], [0.0]);
                cpu::loss::softmax_cross_entropy(
                    &row,
                    &labels[i..],
                    &mut d,
                    &mut l,
                    1,
                    classes,
                    1.0,
                );
                l[0]
            };
            want_dz[i * classes + j] =
                (grad_scale as f64 * central_difference(z[i * classes + j], H, loss)) as f32;
        }
    }
    assert_close("softmax cross-entropy gradient", &dz, &want_dz, FINITE_DIFFERENCE);
}
