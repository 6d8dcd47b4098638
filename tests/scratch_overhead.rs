mod common;
use gan_gpu::data::{self, DatasetName};
use gan_gpu::gpu::Op;
use gan_gpu::nn::gan;
use gan_gpu::train::Trainer;
use std::time::Instant;

fn time(gpu: &gan_gpu::gpu::Gpu, ops: &[Op], n: usize) -> f64 {
    gpu.run(ops);
    let t = Instant::now();
    for _ in 0..n {
        let mut e = gpu.device.create_command_encoder(&Default::default());
        gan_gpu::gpu::record(&mut e, ops);
        gpu.queue.submit([e.finish()]);
    }
    gpu.wait();
    t.elapsed().as_secs_f64() * 1000.0 / n as f64
}

#[test]
#[ignore]
fn overhead() {
    let ds = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let model = std::env::var("MODEL").unwrap_or("mlp".into());
    for gpu in common::gpus() {
        let spec = gan::preset(&model).unwrap();
        let trainer = Trainer::new(gpu.clone(), spec, &ds, 0, None).unwrap();
        let ops: Vec<Op> = trainer.iteration().to_vec();
        let tiny: Vec<Op> = ops
            .iter()
            .map(|op| match op {
                Op::Dispatch(d) => {
                    let mut d = d.clone();
                    d.workgroups = [1, 1, 1];
                    Op::Dispatch(d)
                }
                o => o.clone(),
            })
            .collect();
        let copies = ops.iter().filter(|o| matches!(o, Op::Copy { .. })).count();
        let mut prev = 0.0;
        for k in (1..=tiny.len()).filter(|_| false) {
            let t = time(gpu, &tiny[..k], 40);
            let label = match &tiny[k - 1] {
                Op::Dispatch(d) => d.label,
                _ => "copy",
            };
            println!("{k:3} {label:24} {:.3} ms  +{:.3}", t, t - prev);
            prev = t;
        }
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..8 {
            gan_gpu::gpu::NOREFRESH.store(false, std::sync::atomic::Ordering::Relaxed);
            a.push(time(gpu, &ops, 20));
            gan_gpu::gpu::NOREFRESH.store(true, std::sync::atomic::Ordering::Relaxed);
            b.push(time(gpu, &ops, 20));
        }
        gan_gpu::gpu::NOREFRESH.store(false, std::sync::atomic::Ordering::Relaxed);
        let r: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y / x).collect();
        println!("refresh {:?}\nnorefresh {:?}\nratio {:?}", a, b, r);
        for _ in 0..0 {
            println!(
                "{}: {} ops ({} copies) full {:.2} ms, one-workgroup {:.2} ms",
                common::describe(gpu),
                ops.len(),
                copies,
                time(gpu, &ops, 30),
                time(gpu, &tiny, 30)
            );
        }
    }
}
