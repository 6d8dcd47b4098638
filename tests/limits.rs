//! Every preset trains on a device opened with exactly WebGPU's default limits, so what runs
//! here runs on every vendor's WebGPU implementation.

mod common;

use gan_gpu::data::{self, DatasetName};
use gan_gpu::gpu::{BackendChoice, Gpu, GpuOptions};
use gan_gpu::nn::gan;
use gan_gpu::train::Trainer;

#[test]
fn every_preset_trains_within_webgpu_default_limits() {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    // One device per backend the tests run on, asking for nothing above the defaults.
    for reference in common::gpus() {
        let backend = match reference.info.backend {
            wgpu::Backend::Vulkan => BackendChoice::Vulkan,
            wgpu::Backend::Gl => BackendChoice::Gl,
            wgpu::Backend::Metal => BackendChoice::Metal,
            wgpu::Backend::Dx12 => BackendChoice::Dx12,
            other => panic!("unexpected backend {other:?}"),
        };
        let opts = GpuOptions {
            backend,
            adapter: None,
            portable_kernels: reference.caps.subgroup_size.is_none(),
        };
        let gpu = Gpu::with_limits(&opts, wgpu::Limits::default()).unwrap();
        assert_eq!(gpu.limits, wgpu::Limits::default());
        for name in gan::preset_names() {
            let mut spec = gan::preset(name).unwrap();
            spec.recipe.batch = 2;
            spec.recipe.g_batch = None;
            let mut trainer = Trainer::new(gpu.clone(), spec, &dataset, 1, None).unwrap();
            trainer.step(true);
            let (_, metrics) = trainer.poll_metrics(true)[0];
            assert!(
                metrics.iter().all(|m| m.is_finite()),
                "{name} on {}: {metrics:?}",
                common::describe(&gpu)
            );
        }
    }
}
