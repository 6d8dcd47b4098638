//! Every kernel in bias, activation, loss, optim, rng and gather against its CPU twin, on every
//! adapter, at sizes that are 1, not multiples of the workgroup size, and several workgroups;
//! plus the statistics of the random numbers the GPU makes.

mod common;

use common::{on_every_gpu, poison, random_vec, rng};
use gan_gpu::check::{ELEMENTWISE, REDUCTION, Tolerance, compare};
use gan_gpu::cpu;
use gan_gpu::gpu::{Gpu, Op, Variant, Variants};
use gan_gpu::kernels::gather::PackedRows;
use gan_gpu::kernels::{self, AdamParams, StepUniform};
use rand::Rng;

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: Tolerance) {
    if let Err(e) = compare(name, got, want, tol) {
        panic!("{e}");
    }
}

/// Lengths for elementwise kernels: one element, less than a workgroup (256), and several
/// workgroups with a ragged end.
fn lengths(r: &mut impl Rng) -> [usize; 4] {
    [1, r.random_range(2..256), 256 + r.random_range(1..256), 256 * 5 + r.random_range(1..256)]
}

#[test]
fn bias_grad_matches_cpu() {
    on_every_gpu("bias_grad", |gpu| {
        let mut r = rng(1);
        // Tall matrices are summed in slices of 256 rows (32 with many slices), the last one
        // shorter.
        let shapes = [
            (1, 1),
            (300, 1),
            (1, 300),
            (r.random_range(2..64), r.random_range(257..900)),
            (256 * 9 + r.random_range(1..256), r.random_range(2..80)),
            (256 * 3, 70),
            (32 * 5 + r.random_range(1..32), 9),
        ];
        // Overwriting a poisoned output, and accumulating into one with random sums.
        let accumulate = [false, true, false, true, true, false, true];
        let chosen = gpu.variants();
        for &slices in Variant::SLICES {
            gpu.set_variants(Variants { slices, ..chosen });
            for ((rows, cols), accumulate) in shapes.into_iter().zip(accumulate) {
                let dy = random_vec(&mut r, rows * cols, -1.0, 1.0);
                let initial =
                    if accumulate { random_vec(&mut r, cols, -1.0, 1.0) } else { poison(cols) };
                let db = gpu.upload(&initial);
                let dy_t = gpu.upload(&dy);
                gpu.run(&kernels::bias::bias_grad(gpu, &dy_t, &db, rows, cols, accumulate));
                let mut want = initial;
                cpu::bias::bias_grad(&dy, &mut want, rows, cols, accumulate);
                let name =
                    format!("bias_grad {rows}x{cols} accumulate={accumulate} ({})", slices.name());
                assert_close(&name, &gpu.read(&db), &want, REDUCTION);
            }
        }
        gpu.set_variants(chosen);
    });
}

#[test]
fn activation_forward_matches_cpu() {
    on_every_gpu("activation_forward", |gpu| {
        let mut r = rng(2);
        for act in common::ACTIVATIONS {
            for len in lengths(&mut r) {
                // Wide enough for sigmoid's and tanh's saturated tails.
                let x = random_vec(&mut r, len, -12.0, 12.0);
                let t = gpu.upload(&x);
                gpu.run(&[kernels::activation::activation_forward(gpu, &t, len, act).into()]);
                let mut want = x.clone();
                cpu::activation::activation_forward(&mut want, len, act);
                assert_close(&format!("{act:?} forward, {len}"), &gpu.read(&t), &want, ELEMENTWISE);
            }
        }
    });
}

/// Past 65535 workgroups `Gpu::grid` folds the dispatch into y, and the kernels rebuild the
/// flat index from both; every kernel shares that expression, so one that takes a single
/// element per invocation (the others would need more than a binding holds to fold) checks
/// it, at 16.8M elements.
#[test]
fn bce_with_logits_covers_a_grid_folded_into_y() {
    on_every_gpu("bce_with_logits, folded grid", |gpu| {
        let n = 65535 * 256 + 1;
        let mut r = rng(10);
        let z = random_vec(&mut r, n, -4.0, 4.0);
        let t = random_vec(&mut r, n, 0.0, 1.0);
        let (dz, losses) = (gpu.zeros(n), gpu.zeros(n));
        let (gz, gt) = (gpu.upload(&z), gpu.upload(&t));
        let d = kernels::loss::bce_with_logits(gpu, &gz, &gt, &dz, &losses, n, 1.0);
        assert!(d.workgroups[1] > 1, "{n} elements gave the grid {:?}", d.workgroups);
        gpu.run(&[d.into()]);
        let (mut want_dz, mut want_losses) = (vec![0.0; n], vec![0.0; n]);
        cpu::loss::bce_with_logits(&z, &t, &mut want_dz, &mut want_losses, n, 1.0);
        assert_close(
            "bce losses over a folded grid",
            &gpu.read(&losses),
            &want_losses,
            ELEMENTWISE,
        );
        assert_close("bce gradient over a folded grid", &gpu.read(&dz), &want_dz, ELEMENTWISE);
    });
}

#[test]
fn activation_backward_matches_cpu() {
    on_every_gpu("activation_backward", |gpu| {
        let mut r = rng(3);
        for act in common::ACTIVATIONS {
            for len in lengths(&mut r) {
                let mut y = random_vec(&mut r, len, -4.0, 4.0);
                cpu::activation::activation_forward(&mut y, len, act);
                let dy = random_vec(&mut r, len, -1.0, 1.0);
                let t = gpu.upload(&dy);
                let d =
                    kernels::activation::activation_backward(gpu, &gpu.upload(&y), &t, len, act);
                gpu.run(&[d.into()]);
                let mut want = dy.clone();
                cpu::activation::activation_backward(&y, &mut want, len, act);
                assert_close(
                    &format!("{act:?} backward, {len}"),
                    &gpu.read(&t),
                    &want,
                    ELEMENTWISE,
                );
            }
        }
    });
}

#[test]
fn bce_with_logits_matches_cpu() {
    on_every_gpu("bce_with_logits", |gpu| {
        let mut r = rng(4);
        for n in lengths(&mut r) {
            let z = random_vec(&mut r, n, -20.0, 20.0);
            // Soft and smoothed targets as well as 0 and 1.
            let t: Vec<f32> = (0..n).map(|i| [0.0, 1.0, 0.9, r.random()][i % 4]).collect();
            let (dz, losses) = (gpu.upload(&poison(n)), gpu.upload(&poison(n)));
            let scale = 1.0 / n as f32;
            let d = kernels::loss::bce_with_logits(
                gpu,
                &gpu.upload(&z),
                &gpu.upload(&t),
                &dz,
                &losses,
                n,
                scale,
            );
            gpu.run(&[d.into()]);
            let (mut want_dz, mut want_losses) = (vec![0.0; n], vec![0.0; n]);
            cpu::loss::bce_with_logits(&z, &t, &mut want_dz, &mut want_losses, n, scale);
            assert_close(
                &format!("bce losses, {n}"),
                &gpu.read(&losses),
                &want_losses,
                ELEMENTWISE,
            );
            assert_close(&format!("bce gradient, {n}"), &gpu.read(&dz), &want_dz, ELEMENTWISE);
        }
    });
}

#[test]
fn adam_three_steps_match_cpu() {
    on_every_gpu("adam", |gpu| {
        let mut r = rng(5);
        let clips = [None, Some(0.5)];
        for (len, clip) in lengths(&mut r).into_iter().zip(clips.into_iter().cycle()) {
            let hp = AdamParams { lr: 1e-2, beta1: 0.5, beta2: 0.999, eps: 1e-7, clip };
            // Three parameters past `len` that the kernel must leave alone.
            let w0 = random_vec(&mut r, len + 3, -1.0, 1.0);
            let (params, grads) = (gpu.upload(&w0), gpu.zeros(len));
            let (m, v) = (gpu.zeros(len), gpu.zeros(len));
            let step_buffer = gpu.uniform(&StepUniform::default());
            // Built once and replayed, as the trainer does, with the step rewritten in between.
            let d = kernels::optim::adam(gpu, &params, &grads, &m, &v, len, hp, &step_buffer);
            let (mut w, mut cm, mut cv) = (w0.clone(), vec![0.0; len], vec![0.0; len]);
            for t in 1..=3 {
                let g = random_vec(&mut r, len, -1.0, 1.0);
                let step = StepUniform::new(t, 9);
                gpu.write(&grads, &g);
                gpu.queue.write_buffer(&step_buffer, 0, bytemuck::bytes_of(&step));
                gpu.run(&[d.clone().into()]);
                cpu::optim::adam(&mut w, &g, &mut cm, &mut cv, len, hp, &step);
            }
            let name = format!("adam {len} clip {clip:?}");
            let got = gpu.read(&params);
            assert_eq!(got[len..], w0[len..], "{name}: wrote past len");
            assert_close(&format!("{name}: params"), &got, &w, ELEMENTWISE);
            let delta = |w: &[f32]| -> Vec<f32> { w.iter().zip(&w0).map(|(a, b)| a - b).collect() };
            assert_close(&format!("{name}: updates"), &delta(&got), &delta(&w), ELEMENTWISE);
            assert_close(&format!("{name}: m"), &gpu.read(&m), &cm, ELEMENTWISE);
            assert_close(&format!("{name}: v"), &gpu.read(&v), &cv, ELEMENTWISE);
        }
    });
}

/// The GPU's random floats for (seed, step, stream).
fn gpu_uniform(
    gpu: &Gpu,
    len: usize,
    low: f32,
    high: f32,
    stream: u32,
    step: StepUniform,
) -> Vec<f32> {
    let out = gpu.upload(&poison(len));
    let d = kernels::rng::rng_uniform(gpu, &out, len, low, high, stream, &gpu.uniform(&step));
    gpu.run(&[d.into()]);
    gpu.read(&out)
}

fn gpu_normal(
    gpu: &Gpu,
    len: usize,
    mean: f32,
    std: f32,
    stream: u32,
    step: StepUniform,
) -> Vec<f32> {
    let out = gpu.upload(&poison(len));
    let d = kernels::rng::rng_normal(gpu, &out, len, mean, std, stream, &gpu.uniform(&step));
    gpu.run(&[d.into()]);
    gpu.read(&out)
}

fn gpu_randint(gpu: &Gpu, len: usize, bound: u32, stream: u32, step: StepUniform) -> Vec<u32> {
    let out = gpu.upload_u32(&vec![u32::MAX; len]);
    let d = kernels::rng::rng_randint(gpu, &out, len, bound, stream, &gpu.uniform(&step));
    gpu.run(&[d.into()]);
    gpu.read_u32(&out)
}

/// Mean and (population) variance, in f64.
fn moments(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn rng_randint_is_exact_and_flat() {
    on_every_gpu("rng_randint", |gpu| {
        let step = StepUniform::new(3, 1234);
        let mut r = rng(6);
        // Bounds past 2^16 and near 2^32 exercise every carry of the 16-bit multiply.
        for bound in [1, 10, 60000, 65537, 0x8000_0001, u32::MAX] {
            for len in lengths(&mut r) {
                let got = gpu_randint(gpu, len, bound, 2, step);
                let mut want = vec![0; len];
                cpu::rng::rng_randint(&mut want, len, bound, 2, &step);
                assert_eq!(got, want, "randint below {bound}, {len} values");
            }
        }
        // Histograms: chi-square within 6 standard deviations of its mean (the words are
        // fixed by the seed, so this cannot flake, only catch a skewed mapping).
        for (bound, len) in [(10u32, 100_000), (60000, 600_000)] {
            let got = gpu_randint(gpu, len, bound, 5, step);
            let mut counts = vec![0u64; bound as usize];
            for &v in &got {
                assert!(v < bound, "randint gave {v} for bound {bound}");
                counts[v as usize] += 1;
            }
            let expected = len as f64 / bound as f64;
            let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
            let dof = (bound - 1) as f64;
            assert!(
                (chi2 - dof).abs() < 6.0 * (2.0 * dof).sqrt(),
                "randint below {bound}: chi-square {chi2} for {dof} degrees of freedom"
            );
        }
    });
}

#[test]
fn rng_uniform_matches_cpu_and_is_uniform() {
    on_every_gpu("rng_uniform", |gpu| {
        let step = StepUniform::new(7, 99);
        let mut r = rng(7);
        for len in lengths(&mut r) {
            // On [0, 1) the value is the 24 random bits exactly, so the twins agree bit for bit;
            let got = gpu_uniform(gpu, len, 0.0, 1.0, 3, step);
            let mut want = vec![0.0; len];
            cpu::rng::rng_uniform(&mut want, len, 0.0, 1.0, 3, &step);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "uniform on [0, 1), {len} values");
            // elsewhere the GPU may fuse the scaling into one rounding.
            let got = gpu_uniform(gpu, len, -2.0, 5.0, 3, step);
            cpu::rng::rng_uniform(&mut want, len, -2.0, 5.0, 3, &step);
            assert_close(&format!("uniform on [-2, 5), {len}"), &got, &want, ELEMENTWISE);
        }
        let n = 100_000;
        let got = gpu_uniform(gpu, n, -1.0, 3.0, 4, step);
        assert!(got.iter().all(|&x| (-1.0..3.0).contains(&x)), "uniform value outside [-1, 3)");
        // Mean 1 (standard error 0.0037), variance 16/12 (standard error 0.0038).
        let (mean, var) = moments(&got);
        assert!((mean - 1.0).abs() < 0.02, "uniform mean {mean}");
        assert!((var - 16.0 / 12.0).abs() < 0.02, "uniform variance {var}");
    });
}

#[test]
fn rng_normal_matches_cpu_and_is_normal() {
    on_every_gpu("rng_normal", |gpu| {
        let step = StepUniform::new(11, 5);
        let mut r = rng(8);
        for len in lengths(&mut r) {
            let got = gpu_normal(gpu, len, 0.5, 2.0, 1, step);
            let mut want = vec![0.0; len];
            cpu::rng::rng_normal(&mut want, len, 0.5, 2.0, 1, &step);
            assert_close(&format!("normal, {len}"), &got, &want, ELEMENTWISE);
        }
        let n = 100_000;
        let got = gpu_normal(gpu, n, 3.0, 2.0, 6, step);
        let mut want = vec![0.0; n];
        cpu::rng::rng_normal(&mut want, n, 3.0, 2.0, 6, &step);
        assert_close("normal, 100000", &got, &want, ELEMENTWISE);
        // Mean 3 (standard error 0.0063), variance 4 (standard error 0.018), and the share
        // within one standard deviation 0.6827 (standard error 0.0015), which a wrong shape
        // with the right variance would miss.
        let (mean, var) = moments(&got);
        assert!((mean - 3.0).abs() < 0.04, "normal mean {mean}");
        assert!((var - 4.0).abs() < 0.1, "normal variance {var}");
        let inside = got.iter().filter(|&&x| (x - 3.0).abs() < 2.0).count() as f64 / n as f64;
        assert!((inside - 0.6827).abs() < 0.008, "normal: {inside} within one std");
    });
}

#[test]
fn rng_depends_on_seed_step_stream_and_index_only() {
    on_every_gpu("rng streams", |gpu| {
        let len = 1000;
        let base = gpu_uniform(gpu, len, 0.0, 1.0, 0, StepUniform::new(1, 42));
        // A value does not depend on how many were asked for.
        let short = gpu_uniform(gpu, 5, 0.0, 1.0, 0, StepUniform::new(1, 42));
        assert_eq!(short, base[..5]);
        assert_eq!(gpu_uniform(gpu, len, 0.0, 1.0, 0, StepUniform::new(1, 42)), base);
        let distinct = |v: &[f32], w: &[f32]| v.iter().zip(w).filter(|(a, b)| a != b).count();
        // With 24 random bits, each coincidence has probability 2^-24.
        for (what, other) in [
            ("stream", gpu_uniform(gpu, len, 0.0, 1.0, 1, StepUniform::new(1, 42))),
            ("step", gpu_uniform(gpu, len, 0.0, 1.0, 0, StepUniform::new(2, 42))),
            ("seed", gpu_uniform(gpu, len, 0.0, 1.0, 0, StepUniform::new(1, 43))),
        ] {
            assert!(distinct(&base, &other) >= len - 1, "another {what} repeats the numbers");
        }
        assert!(distinct(&base[1..], &base[..len - 1]) >= len - 2, "neighbours repeat");
    });
}

#[test]
fn gather_rows_matches_cpu() {
    on_every_gpu("gather_rows", |gpu| {
        let mut r = rng(9);
        // Rows of whole words (784 = 28*28) and rows that straddle word boundaries.
        for (count, row_len) in
            [(1, 1), (300, 1), (7, 3), (64, 784), (37, r.random_range(5..60) | 1)]
        {
            let rows = 23;
            let images: Vec<u8> = (0..rows * row_len).map(|_| r.random()).collect();
            // The last row (ends at the buffer's end) and repeats among the rest.
            let indices: Vec<u32> = (0..count)
                .map(|i| if i == 0 { rows as u32 - 1 } else { r.random_range(0..rows as u32) })
                .collect();
            let (scale, offset) = (1.0 / 127.5, -1.0);
            let mut want = vec![0.0; count * row_len];
            cpu::gather::gather_rows(
                &images, 0, rows, &indices, &mut want, count, row_len, scale, offset,
            );
            // Whole, and split into shards of 5 rows (the last one shorter) or of as many rows
            // as fit 40 bytes, each gathering the rows it holds.
            for shard_bytes in [images.len(), 5 * row_len, 40.max(row_len)] {
                let out = gpu.upload(&poison(count * row_len));
                let dataset = PackedRows::upload_in_shards(gpu, &images, row_len, shard_bytes);
                let ops: Vec<Op> = dataset
                    .gather(gpu, &gpu.upload_u32(&indices), &out, count, scale, offset)
                    .into_iter()
                    .map(Op::from)
                    .collect();
                gpu.run(&ops);
                let name = format!(
                    "gather {count} rows of {row_len} from {} shards",
                    dataset.shard_count()
                );
                assert_close(&name, &gpu.read(&out), &want, ELEMENTWISE);
            }
        }
    });
}

/// Rows x classes for the softmax kernels: one row, ragged numbers of rows around the
/// workgroup size, and classes other than 10 (a single class, two, and wide rows).
fn softmax_shapes(r: &mut impl Rng) -> [(usize, usize); 5] {
    [
        (1, 10),
        (r.random_range(2..256), 1),
        (256 + r.random_range(1..256), 10),
        (r.random_range(2..40), 2),
        (256 * 2 + r.random_range(1..256), r.random_range(11..300)),
    ]
}

#[test]
fn softmax_cross_entropy_matches_cpu() {
    on_every_gpu("softmax_cross_entropy", |gpu| {
        let mut r = rng(11);
        for (rows, classes) in softmax_shapes(&mut r) {
            // Wide logits: exp would overflow f32 without the row maximum taken off.
            let z = random_vec(&mut r, rows * classes, -100.0, 100.0);
            let labels: Vec<u32> = (0..rows).map(|_| r.random_range(0..classes as u32)).collect();
            let (dz, losses) = (gpu.upload(&poison(rows * classes)), gpu.upload(&poison(rows)));
            let scale = 1.0 / rows as f32;
            let d = kernels::loss::softmax_cross_entropy(
                gpu,
                &gpu.upload(&z),
                &gpu.upload_u32(&labels),
                &dz,
                &losses,
                rows,
                classes,
                scale,
            );
            gpu.run(&[d.into()]);
            let (mut want_dz, mut want_losses) = (vec![0.0; rows * classes], vec![0.0; rows]);
            cpu::loss::softmax_cross_entropy(
                &z,
                &labels,
                &mut want_dz,
                &mut want_losses,
                rows,
                classes,
                scale,
            );
            let name = format!("softmax cross-entropy {rows}x{classes}");
            assert_close(&format!("{name}: losses"), &gpu.read(&losses), &want_losses, ELEMENTWISE);
            assert_close(&format!("{name}: gradient"), &gpu.read(&dz), &want_dz, ELEMENTWISE);
        }
    });
}

#[test]
fn softmax_matches_cpu() {
    on_every_gpu("softmax", |gpu| {
        let mut r = rng(12);
        for (rows, classes) in softmax_shapes(&mut r) {
            let z = random_vec(&mut r, rows * classes, -100.0, 100.0);
            let probs = gpu.upload(&poison(rows * classes));
            gpu.run(&[kernels::loss::softmax(gpu, &gpu.upload(&z), &probs, rows, classes).into()]);
            let mut want = vec![0.0; rows * classes];
            cpu::loss::softmax(&z, &mut want, rows, classes);
            let name = format!("softmax {rows}x{classes}");
            assert_close(&name, &gpu.read(&probs), &want, ELEMENTWISE);
        }
    });
}

#[test]
fn gather_labels_matches_cpu() {
    on_every_gpu("gather_labels", |gpu| {
        let mut r = rng(13);
        for (count, len) in [(1, 1), (300, 23), (r.random_range(2..256), 1001)] {
            let labels: Vec<u8> = (0..len).map(|_| r.random()).collect();
            let words: Vec<u32> = labels
                .chunks(4)
                .map(|c| {
                    let mut b = [0; 4];
                    b[..c.len()].copy_from_slice(c);
                    u32::from_le_bytes(b)
                })
                .collect();
            // The last label (in the buffer's last word) and repeats among the rest.
            let indices: Vec<u32> = (0..count)
                .map(|i| if i == 0 { len as u32 - 1 } else { r.random_range(0..len as u32) })
                .collect();
            let out = gpu.upload_u32(&vec![u32::MAX; count]);
            let d = kernels::gather::gather_labels(
                gpu,
                &gpu.upload_u32(&words),
                &gpu.upload_u32(&indices),
                &out,
                count,
            );
            gpu.run(&[d.into()]);
            let mut want = vec![0; count];
            cpu::gather::gather_labels(&labels, &indices, &mut want, count);
            assert_eq!(gpu.read_u32(&out), want, "gather {count} labels of {len}");
        }
    });
}
