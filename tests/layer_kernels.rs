//! The layer kernels of the DCGAN presets (average pooling, upsampling, batch norm, dropout,
//! RMSprop, the weights' moving average) against their CPU twins on every adapter: odd map
//! sizes, 1x1 maps, batch 1, channel counts that are and are not multiples of 4, and sizes that
//! take several workgroups.

mod common;

use std::time::Instant;

use common::{on_every_gpu, poison, random_vec, rng};
use gan_gpu::check::{ELEMENTWISE, REDUCTION, Tolerance, compare};
use gan_gpu::cpu;
use gan_gpu::gpu::{Dispatch, Gpu, Op, Tensor};
use gan_gpu::kernels::optim::RmsPropParams;
use gan_gpu::kernels::{self, StepUniform};
use rand::Rng;
use rand::rngs::StdRng;

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    if let Err(e) = compare(name, got, want, tol) {
        panic!("{e}");
    }
}

/// NHWC map shapes (batch, h, w, c): 1x1 and 1xN maps, odd sizes (whose last row or column
/// pooling drops), batch 1, channel counts 1, 3, 5 and 7 and multiples of 4 (which the kernels
/// take a quad at a time), one of 43 workgroups, two random.
fn map_shapes(r: &mut StdRng) -> Vec<(usize, usize, usize, usize)> {
    vec![
        (1, 1, 1, 1),
        (1, 1, 6, 3),
        (1, 2, 2, 3),
        (2, 5, 7, 5),
        (3, 4, 6, 1),
        (2, 28, 28, 7),
        // Channels in quads, which the kernels take four at a time.
        (2, 5, 7, 8),
        (1, 3, 3, 4),
        (r.random_range(1..4), r.random_range(1..12), r.random_range(1..12), r.random_range(1..20)),
        (
            r.random_range(1..4),
            r.random_range(1..12),
            r.random_range(1..12),
            4 * r.random_range(1..8),
        ),
    ]
}

/// What a pool or upsample launcher writes from `input` over a poisoned `out_len` elements.
fn run_map(
    gpu: &Gpu,
    input: &[f32],
    out_len: usize,
    launch: impl Fn(&Tensor, &Tensor) -> Dispatch,
) -> Vec<f32> {
    let out = gpu.upload(&poison(out_len));
    gpu.run(&[launch(&gpu.upload(input), &out).into()]);
    // Pooling a one-pixel-high map gives nothing, and Gpu::read cannot read nothing back.
    if out_len == 0 { Vec::new() } else { gpu.read(&out) }
}

#[test]
fn avg_pool_matches_cpu() {
    on_every_gpu("avg_pool2x2", |gpu| {
        let mut r = rng(21);
        for (b, h, w, c) in map_shapes(&mut r) {
            let name = format!("{b}x{h}x{w}x{c}");
            let (len, pooled) = (b * h * w * c, b * (h / 2) * (w / 2) * c);
            let x = random_vec(&mut r, len, -1.0, 1.0);
            let got =
                run_map(gpu, &x, pooled, |x, y| kernels::pool::avg_pool2x2(gpu, x, y, b, h, w, c));
            let mut want = vec![0.0; pooled];
            cpu::pool::avg_pool2x2(&x, &mut want, b, h, w, c);
            assert_close(&format!("avg_pool2x2 {name}"), &got, &want, ELEMENTWISE);

            let dy = random_vec(&mut r, pooled, -1.0, 1.0);
            let got = run_map(gpu, &dy, len, |dy, dx| {
                kernels::pool::avg_pool2x2_backward(gpu, dy, dx, b, h, w, c)
            });
            let mut want = vec![f32::NAN; len];
            cpu::pool::avg_pool2x2_backward(&dy, &mut want, b, h, w, c);
            assert_close(&format!("avg_pool2x2_backward {name}"), &got, &want, ELEMENTWISE);
        }
    });
}

#[test]
fn upsample_matches_cpu() {
    on_every_gpu("upsample2x", |gpu| {
        let mut r = rng(22);
        for (b, h, w, c) in map_shapes(&mut r) {
            let name = format!("{b}x{h}x{w}x{c}");
            let (len, upsampled) = (b * h * w * c, 4 * b * h * w * c);
            let x = random_vec(&mut r, len, -1.0, 1.0);
            let got = run_map(gpu, &x, upsampled, |x, y| {
                kernels::pool::upsample2x(gpu, x, y, b, h, w, c)
            });
            let mut want = vec![f32::NAN; upsampled];
            cpu::pool::upsample2x(&x, &mut want, b, h, w, c);
            assert_close(&format!("upsample2x {name}"), &got, &want, ELEMENTWISE);

            let dy = random_vec(&mut r, upsampled, -1.0, 1.0);
            let got = run_map(gpu, &dy, len, |dy, dx| {
                kernels::pool::upsample2x_backward(gpu, dy, dx, b, h, w, c)
            });
            let mut want = vec![f32::NAN; len];
            cpu::pool::upsample2x_backward(&dy, &mut want, b, h, w, c);
            assert_close(&format!("upsample2x_backward {name}"), &got, &want, ELEMENTWISE);
        }
    });
}

const EPS: f32 = 1e-3;
const MOMENTUM: f32 = 0.9;

/// Three training steps (forward and backward, the dispatches built once and replayed with
/// new x and dy, as the trainer does), then inference with the running statistics they left.
fn check_batch_norm(gpu: &Gpu, r: &mut StdRng, rows: usize, cols: usize, unbiased: bool) {
    let (cpu_gamma, cpu_beta) = (random_vec(r, cols, -2.0, 2.0), random_vec(r, cols, -1.0, 1.0));
    let mut cpu_running_mean = random_vec(r, cols, -1.0, 1.0);
    let mut cpu_running_var = random_vec(r, cols, 0.5, 2.0);
    let len = rows * cols;
    let name = format!("batch norm {rows}x{cols}, unbiased {unbiased}");
    let (x, dy) = (gpu.zeros(len), gpu.zeros(len));
    let (gamma, beta) = (gpu.upload(&cpu_gamma), gpu.upload(&cpu_beta));
    let running_mean = gpu.upload(&cpu_running_mean);
    let running_var = gpu.upload(&cpu_running_var);
    let (y, dx) = (gpu.upload(&poison(len)), gpu.upload(&poison(len)));
    let [mean, var, dgamma, dbeta] = [0; 4].map(|_| gpu.upload(&poison(cols)));
    let mut step: Vec<Op> = kernels::batchnorm::batch_norm_train(
        gpu,
        &x,
        &y,
        &gamma,
        &beta,
        &mean,
        &var,
        &running_mean,
        &running_var,
        rows,
        cols,
        EPS,
        MOMENTUM,
        unbiased,
    );
    step.extend(kernels::batchnorm::batch_norm_backward(
        gpu, &x, &dy, &gamma, &mean, &var, &dx, &dgamma, &dbeta, rows, cols, EPS,
    ));
    for t in 0..3 {
        // Columns with means and spreads of their own, some means a hundred standard
        // deviations from zero, where summing x^2 would cancel catastrophically.
        let offsets = random_vec(r, cols, -10.0, 10.0);
        let spreads = random_vec(r, cols, 0.1, 3.0);
        let xs: Vec<f32> = random_vec(r, len, -1.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| offsets[i % cols] + v * spreads[i % cols])
            .collect();
        let dys = random_vec(r, len, -1.0, 1.0);
        gpu.write(&x, &xs);
        gpu.write(&dy, &dys);
        gpu.run(&step);
        let mut want_y = vec![0.0; len];
        let (mut want_mean, mut want_var) = (vec![0.0; cols], vec![0.0; cols]);
        cpu::batchnorm::batch_norm_train(
            &xs,
            &mut want_y,
            &cpu_gamma,
            &cpu_beta,
            &mut want_mean,
            &mut want_var,
            &mut cpu_running_mean,
            &mut cpu_running_var,
            rows,
            cols,
            EPS,
            MOMENTUM,
            unbiased,
        );
        let mut want_dx = vec![0.0; len];
        let (mut want_dgamma, mut want_dbeta) = (vec![0.0; cols], vec![0.0; cols]);
        cpu::batchnorm::batch_norm_backward(
            &xs,
            &dys,
            &cpu_gamma,
            &want_mean,
            &want_var,
            &mut want_dx,
            &mut want_dgamma,
            &mut want_dbeta,
            rows,
            cols,
            EPS,
        );
        let at = format!("{name}, step {t}");
        assert_close(&format!("{at}: mean"), &gpu.read(&mean), &want_mean, REDUCTION);
        assert_close(&format!("{at}: var"), &gpu.read(&var), &want_var, REDUCTION);
        assert_close(&format!("{at}: y"), &gpu.read(&y), &want_y, REDUCTION);
        assert_close(&format!("{at}: dbeta"), &gpu.read(&dbeta), &want_dbeta, REDUCTION);
        assert_close(&format!("{at}: dgamma"), &gpu.read(&dgamma), &want_dgamma, REDUCTION);
        assert_close(&format!("{at}: dx"), &gpu.read(&dx), &want_dx, REDUCTION);
    }
    let running = [(&running_mean, &cpu_running_mean), (&running_var, &cpu_running_var)];
    for (what, (got, want)) in ["running mean", "running var"].iter().zip(running) {
        assert_close(&format!("{name}: {what}"), &gpu.read(got), want, REDUCTION);
    }
    let xs = random_vec(r, len, -3.0, 3.0);
    gpu.write(&x, &xs);
    let infer = kernels::batchnorm::batch_norm_infer(
        gpu,
        &x,
        &y,
        &gamma,
        &beta,
        &running_mean,
        &running_var,
        rows,
        cols,
        EPS,
    );
    gpu.write(&y, &poison(len));
    gpu.run(&infer);
    let mut want_y = vec![0.0; len];
    cpu::batchnorm::batch_norm_infer(
        &xs,
        &mut want_y,
        &cpu_gamma,
        &cpu_beta,
        &cpu_running_mean,
        &cpu_running_var,
        rows,
        cols,
        EPS,
    );
    assert_close(&format!("{name}: inference y"), &gpu.read(&y), &want_y, ELEMENTWISE);
}

#[test]
fn batch_norm_matches_cpu() {
    on_every_gpu("batch_norm", |gpu| {
        let mut r = rng(23);
        // (rows, cols): one row (variance zero), one column, channel counts not multiples of
        // 4, many chunks of rows (5000x1, 4000x17), two workgroups of columns (50x300), and
        // the dense layer's width.
        let shapes = [
            (1, 5),
            (2, 1),
            (5000, 1),
            (300, 3),
            (4000, 17),
            (97, 64),
            (50, 300),
            (8, 12544),
            (r.random_range(2..500), r.random_range(1..100)),
        ];
        for (i, (rows, cols)) in shapes.into_iter().enumerate() {
            check_batch_norm(gpu, &mut r, rows, cols, rows > 1 && i % 2 == 0);
        }
    });
}

/// The zero pattern of a dropout result (the inputs have no zeros of their own).
fn dropped(v: &[f32]) -> Vec<bool> {
    v.iter().map(|&x| x == 0.0).collect()
}

/// Dropout of `x` on the GPU, x[0] being element `first` of the stream.
fn gpu_dropout(
    gpu: &Gpu,
    x: &[f32],
    first: usize,
    rate: f32,
    stream: u32,
    step: StepUniform,
) -> Vec<f32> {
    let t = gpu.upload(x);
    let step = gpu.uniform(&step);
    let d = kernels::rng::dropout_forward(gpu, &t, x.len(), first, rate, stream, &step);
    gpu.run(&[d.into()]);
    gpu.read(&t)
}

#[test]
fn dropout_matches_cpu_and_drops_its_share() {
    on_every_gpu("dropout", |gpu| {
        let mut r = rng(24);
        let step = StepUniform::new(5, 77);
        for rate in [0.0, 0.25, 0.5, 0.9] {
            // Chunks that start on an odd element, mid-pair, as well as the stream's start.
            for (len, first) in [(1, 0), (1, 7), (255, 0), (256 * 5 + 17, 0), (256 + 9, 301)] {
                let x = random_vec(&mut r, len, -1.0, 1.0);
                let got = gpu_dropout(gpu, &x, first, rate, 3, step);
                let mut want = x.clone();
                cpu::rng::dropout_forward(&mut want, len, first, rate, 3, &step);
                let name = format!("dropout rate {rate}, {len} from {first}");
                assert_eq!(dropped(&got), dropped(&want), "{name}: mask");
                assert_close(&name, &got, &want, ELEMENTWISE);
            }
            // The kept share is 1 - rate within 6 standard errors (at most 0.0016 here).
            let n = 100_000;
            let got = gpu_dropout(gpu, &vec![1.0; n], 0, rate, 4, step);
            let kept = got.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
            let tolerance = 6.0 * (rate as f64 * (1.0 - rate as f64) / n as f64).sqrt();
            assert!((kept - (1.0 - rate as f64)).abs() <= tolerance, "rate {rate} kept {kept}");
            // Kept values are scaled so that the mean stays 1.
            let scale = 1.0 / (1.0 - rate);
            assert!(
                got.iter().all(|&v| v == 0.0 || v == scale),
                "rate {rate}: a kept value is not 1/(1 - rate)"
            );
        }
    });
}

#[test]
fn dropout_backward_reuses_the_mask_and_steps_change_it() {
    on_every_gpu("dropout backward", |gpu| {
        let mut r = rng(25);
        let (len, rate, stream) = (3000, 0.5, 7);
        let step = StepUniform::new(12, 3);
        let step_buffer = gpu.uniform(&step);
        let x = random_vec(&mut r, len, -1.0, 1.0);
        let dy = random_vec(&mut r, len, -1.0, 1.0);
        let (xt, dyt) = (gpu.upload(&x), gpu.upload(&dy));
        gpu.run(&[
            kernels::rng::dropout_forward(gpu, &xt, len, 0, rate, stream, &step_buffer).into(),
            kernels::rng::dropout_backward(gpu, &dyt, len, 0, rate, stream, &step_buffer).into(),
        ]);
        let (y, dx) = (gpu.read(&xt), gpu.read(&dyt));
        assert_eq!(dropped(&y), dropped(&dx), "backward drops other elements than forward");
        // A batch split into chunks at any element gets the whole batch's mask.
        for split in [1000, 1501] {
            let (head, tail) = x.split_at(split);
            let mut chunked = gpu_dropout(gpu, head, 0, rate, stream, step);
            chunked.extend(gpu_dropout(gpu, tail, split, rate, stream, step));
            assert_eq!(chunked, y, "dropout in chunks split at {split}");
        }
        let mut want = dy.clone();
        cpu::rng::dropout_backward(&mut want, len, 0, rate, stream, &step);
        assert_close("dropout backward", &dx, &want, ELEMENTWISE);
        // Another step or stream draws another mask: independent masks at rate 0.5 disagree
        // on half the elements (standard error 0.009).
        let differ = |a: &[f32], b: &[f32]| {
            dropped(a).iter().zip(dropped(b)).filter(|(p, q)| **p != *q).count() as f64 / len as f64
        };
        let next_step = StepUniform { step: 13, ..step };
        for (what, other) in [
            ("step", gpu_dropout(gpu, &x, 0, rate, stream, next_step)),
            ("stream", gpu_dropout(gpu, &x, 0, rate, stream + 1, step)),
        ] {
            let share = differ(&y, &other);
            assert!((share - 0.5).abs() < 0.06, "another {what}: masks differ in {share}");
        }
    });
}

#[test]
fn rmsprop_three_steps_match_cpu() {
    on_every_gpu("rmsprop", |gpu| {
        let mut r = rng(26);
        let lengths = [1, r.random_range(2..256), 256 * 5 + r.random_range(1..256)];
        for (len, clip) in lengths.into_iter().zip([None, Some(0.5), None]) {
            let hp = RmsPropParams { lr: 1e-2, rho: 0.9, eps: 1e-7, clip };
            let w0 = random_vec(&mut r, len, -1.0, 1.0);
            let (params, grads, v) = (gpu.upload(&w0), gpu.zeros(len), gpu.zeros(len));
            let d = kernels::optim::rmsprop(gpu, &params, &grads, &v, len, hp);
            let (mut w, mut cv) = (w0.clone(), vec![0.0; len]);
            for _ in 0..3 {
                let g = random_vec(&mut r, len, -1.0, 1.0);
                gpu.write(&grads, &g);
                gpu.run(&[d.clone().into()]);
                cpu::optim::rmsprop(&mut w, &g, &mut cv, len, hp);
            }
            let name = format!("rmsprop {len} clip {clip:?}");
            let got = gpu.read(&params);
            assert_close(&format!("{name}: params"), &got, &w, ELEMENTWISE);
            let delta = |w: &[f32]| -> Vec<f32> { w.iter().zip(&w0).map(|(a, b)| a - b).collect() };
            assert_close(&format!("{name}: updates"), &delta(&got), &delta(&w), ELEMENTWISE);
            assert_close(&format!("{name}: v"), &gpu.read(&v), &cv, ELEMENTWISE);
        }
    });
}

#[test]
fn ema_update_three_steps_match_cpu() {
    on_every_gpu("ema_update", |gpu| {
        let mut r = rng(27);
        let lengths = [1, r.random_range(2..256), 256 * 5 + r.random_range(1..256)];
        for (len, decay) in lengths.into_iter().zip([0.9, 0.999, 0.5]) {
            // Three elements past `len` that the kernel must leave alone.
            let a0 = random_vec(&mut r, len + 3, -1.0, 1.0);
            let (average, params) = (gpu.upload(&a0), gpu.zeros(len));
            let d = kernels::optim::ema_update(gpu, &average, &params, len, decay);
            let mut want = a0.clone();
            for _ in 0..3 {
                let w = random_vec(&mut r, len, -1.0, 1.0);
                gpu.write(&params, &w);
                gpu.run(&[d.clone().into()]);
                cpu::optim::ema_update(&mut want, &w, len, decay);
            }
            let name = format!("ema_update {len} decay {decay}");
            let got = gpu.read(&average);
            assert_eq!(got[len..], a0[len..], "{name}: wrote past len");
            assert_close(&name, &got, &want, ELEMENTWISE);
            let delta = |a: &[f32]| -> Vec<f32> { a.iter().zip(&a0).map(|(x, y)| x - y).collect() };
            assert_close(&format!("{name}: updates"), &delta(&got), &delta(&want), ELEMENTWISE);
            // An average that equals its weights stays bit for bit where it is.
            gpu.write(&params, &got[..len]);
            gpu.run(&[d.clone().into()]);
            assert_eq!(gpu.read(&average), got, "{name}: a settled average moved");
        }
    });
}

/// Median seconds of `runs` submissions of `ops`, after one to compile and warm up.
fn median_seconds(gpu: &Gpu, ops: &[Op], runs: usize) -> f64 {
    gpu.run(ops);
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            gpu.run(ops);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Speed of the batch-norm passes at the DCGAN shapes: a conv layer's 64 channels of
/// 256 x 28 x 28 pixels and a dense layer of 12544 units at batch 256. GB/s counts the bytes
/// each pass must read and write at least once: the statistics read x (4 bytes an element),
/// training reads x twice and writes y (12), the gradient reads x and dy twice and writes dx
/// (20). Run with `cargo test --release --test layer_kernels -- --ignored --nocapture`.
#[test]
#[ignore]
fn batch_norm_speed() {
    on_every_gpu("batch_norm speed", |gpu| {
        for (rows, cols) in [(200_704, 64), (256, 12_544)] {
            let len = rows * cols;
            let x = gpu.upload(&random_vec(&mut rng(27), len, -1.0, 1.0));
            let [y, dy, dx] = [0; 3].map(|_| gpu.zeros(len));
            let [gamma, beta, mean, var, rm, rv, dgamma, dbeta] = [0; 8].map(|_| gpu.zeros(cols));
            let train = kernels::batchnorm::batch_norm_train(
                gpu, &x, &y, &gamma, &beta, &mean, &var, &rm, &rv, rows, cols, EPS, MOMENTUM, false,
            );
            let backward = kernels::batchnorm::batch_norm_backward(
                gpu, &x, &dy, &gamma, &mean, &var, &dx, &dgamma, &dbeta, rows, cols, EPS,
            );
            // The training ops: 4 copies into the columns buffer, the sums, the statistics, ...
            let statistics = train[..6].to_vec();
            for (what, ops, bytes) in [
                ("statistics (sums + stats)", statistics, 4),
                ("training forward", train, 12),
                ("backward", backward, 20),
            ] {
                let s = median_seconds(gpu, &ops, 5);
                let gbps = (bytes * len) as f64 / s / 1e9;
                eprintln!("  {rows}x{cols} {what}: {:.2} ms, {gbps:.2} GB/s", s * 1e3);
            }
        }
    });
}
