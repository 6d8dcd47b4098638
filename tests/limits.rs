//! Every preset trains on a device opened with exactly WebGPU's default limits, so what runs
//! here runs on every vendor's WebGPU implementation.

mod common;

use gan_gpu::data::{self, DatasetName};
use gan_gpu::generate::generate;
use std::sync::Arc;

use gan_gpu::check::{REDUCTION, compare};
use gan_gpu::gpu::{BackendChoice, Gpu, GpuOptions, Variant, Variants};
use gan_gpu::kernels::StepUniform;
use gan_gpu::nn::spec::NetSpec;
use gan_gpu::nn::{Grads, Mode, Net, batch_chunks, gan};
use gan_gpu::reference::CpuNet;
use gan_gpu::train::Trainer;

/// Options that open `reference`'s adapter with its kernel variants.
fn options_for(reference: &Gpu) -> GpuOptions {
    let backend = match reference.info.backend {
        wgpu::Backend::Vulkan => BackendChoice::Vulkan,
        wgpu::Backend::Gl => BackendChoice::Gl,
        wgpu::Backend::Metal => BackendChoice::Metal,
        wgpu::Backend::Dx12 => BackendChoice::Dx12,
        other => panic!("unexpected backend {other:?}"),
    };
    GpuOptions {
        backend,
        adapter: Some(reference.info.name.clone()),
        portable_kernels: reference.caps.subgroup_size.is_none(),
        texture_mirrors: reference.caps.texture_mirrors,
    }
}

/// A device on `reference`'s adapter, with its kernel variants, opened with `limits`.
fn same_adapter(reference: &Gpu, limits: wgpu::Limits) -> Arc<Gpu> {
    let gpu = Gpu::with_limits(&options_for(reference), limits.clone()).unwrap();
    assert_eq!(gpu.limits, limits);
    gpu
}

#[test]
fn every_preset_trains_within_webgpu_default_limits() {
    every_preset_trains_within(wgpu::Limits::default());
}

/// Downlevel WebGPU (WebGL2-class devices): 4 storage buffers per stage, 2048-texel textures,
/// 256 invocations per workgroup.
#[test]
fn every_preset_trains_within_downlevel_limits() {
    every_preset_trains_within(wgpu::Limits::downlevel_defaults());
}

fn every_preset_trains_within(limits: wgpu::Limits) {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    // One device per backend the tests run on, asking for nothing above `limits`.
    for reference in common::gpus() {
        let gpu = same_adapter(reference, limits.clone());
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

/// Storage bindings and buffers of 16 MiB: MNIST needs three, a dcgan image 392 KiB.
fn small_buffers() -> wgpu::Limits {
    let small = 16 << 20;
    wgpu::Limits {
        max_storage_buffer_binding_size: small,
        max_buffer_size: small,
        ..wgpu::Limits::default()
    }
}

/// Three mlp steps (batch `batch`, seed `seed`) on a device opened with `limits` give exactly
/// the metrics of the same steps with the default limits, on every adapter.
fn mlp_trains_the_same_within(limits: wgpu::Limits, batch: usize, seed: u32) {
    let mut spec = gan::preset("mlp").unwrap();
    spec.recipe.batch = batch;
    trains_the_same_within(limits, &spec, 3, seed, 0.0);
}

/// `steps` steps of `spec` on a device opened with `limits` give the metrics of the same steps
/// with the default limits, to within `tolerance`, on every adapter.
fn trains_the_same_within(
    limits: wgpu::Limits,
    spec: &gan::GanSpec,
    steps: usize,
    seed: u32,
    tolerance: f32,
) {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let within = |reference: &Gpu| same_adapter(reference, limits.clone());
    trains_the_same_on(&dataset, common::gpus().iter(), within, spec, steps, seed, tolerance);
}

/// `steps` steps of `spec` on `dataset`, on each of `references` and on the device `other`
/// opens for it, give the same metrics, to within `tolerance`.
fn trains_the_same_on<'a>(
    dataset: &data::Dataset,
    references: impl Iterator<Item = &'a Arc<Gpu>>,
    other: impl Fn(&Gpu) -> Arc<Gpu>,
    spec: &gan::GanSpec,
    steps: usize,
    seed: u32,
    tolerance: f32,
) {
    let metrics = |gpu: Arc<Gpu>| {
        let mut trainer = Trainer::new(gpu, spec.clone(), dataset, seed, None).unwrap();
        for _ in 0..steps {
            trainer.step(true);
        }
        trainer.poll_metrics(true)
    };
    for reference in references {
        let _gl = common::serialize_gl(reference);
        let on = common::describe(reference);
        let (got, want) = (metrics(other(reference)), metrics(reference.clone()));
        assert_eq!(got.len(), want.len(), "{on}");
        for ((step, got), (_, want)) in got.iter().zip(&want) {
            let close = got.iter().zip(want).all(|(g, w)| (g - w).abs() <= tolerance);
            assert!(close, "{on} step {step}: {got:?} against {want:?}");
        }
    }
}

/// Kernels read the same values from the storage buffers as through the texture mirrors
/// (`--no-texture-mirrors`, or tensors too large for a texture), so every preset's first steps
/// give exactly the same metrics without mirrors. On Vulkan: the same WGSL runs on GL, whose
/// compiler would take minutes over this second set of pipelines.
#[test]
fn every_preset_trains_the_same_without_texture_mirrors() {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let without_mirrors = |reference: &Gpu| {
        let opts = GpuOptions { texture_mirrors: false, ..options_for(reference) };
        let gpu = Gpu::new(&opts).unwrap();
        assert!(!gpu.caps.texture_mirrors);
        gpu.set_variants(Variants { reads: Variant::Buffers, ..reference.variants() });
        gpu
    };
    for name in gan::preset_names() {
        let mut spec = gan::preset(name).unwrap();
        spec.recipe.batch = 2;
        spec.recipe.g_batch = None;
        let vulkan = common::gpus().iter().filter(|r| r.info.backend == wgpu::Backend::Vulkan);
        trains_the_same_on(&dataset, vulkan, without_mirrors, &spec, 2, 5, 0.0);
    }
}

/// A dataset larger than one storage binding is split into shards, each gathered by its own
/// dispatch, and training on it is the same as on a device where it fits one binding.
#[test]
fn a_dataset_over_the_binding_limit_trains_from_shards() {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let binding = small_buffers().max_storage_buffer_binding_size as usize;
    assert!(dataset.images.len() > 2 * binding, "MNIST should need three shards");
    mlp_trains_the_same_within(small_buffers(), 64, 3);
}

/// An adapter that offers less than the kernels need is refused when the device is opened,
/// naming the limit, instead of failing at its first pipeline.
#[test]
fn an_adapter_below_the_needed_limits_is_a_clear_error() {
    let opts = options_for(&common::gpus()[0]);
    let beyond =
        wgpu::Limits { max_storage_buffers_per_shader_stage: 1 << 20, ..Default::default() };
    let err =
        Gpu::with_limits(&opts, beyond).err().expect("no adapter offers 2^20 storage buffers");
    let message = format!("{err:#}");
    assert!(message.contains("max_storage_buffers_per_shader_stage"), "{message}");
    assert!(message.contains("--adapter"), "{message}");
}

/// `generate` runs the generator in chunks that the device's buffers hold, and an image depends
/// only on its seed and index: dcgan's 128-channel 28x28 activation (392 KiB an image) at a
/// 16 MiB limit splits the pass over 50 images into chunks of 25, whose images equal those of
/// one unsplit pass.
#[test]
fn generating_more_images_than_a_buffer_holds_runs_in_chunks() {
    let dataset = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let limits = small_buffers();
    for reference in common::gpus() {
        let _gl = common::serialize_gl(reference);
        let spec = gan::preset("dcgan").unwrap();
        let checkpoint =
            Trainer::new(reference.clone(), spec, &dataset, 4, None).unwrap().checkpoint();
        let whole = generate(reference, &checkpoint, 50, 9);
        let chunked = generate(&same_adapter(reference, limits.clone()), &checkpoint, 50, 9);
        assert_eq!(chunked, whole, "{}", common::describe(reference));
    }
}

/// Operands too large for the device's textures are read from their buffers instead: on a
/// device whose textures hold 8 texels, mlp trains from the buffers (only its smallest tensors
/// go through textures) exactly as it trains through textures.
#[test]
fn operands_too_large_for_a_texture_are_read_from_their_buffers() {
    let limits = wgpu::Limits { max_texture_dimension_2d: 8, ..wgpu::Limits::default() };
    mlp_trains_the_same_within(limits, 32, 5);
}

/// A small network with every kind of layer. Its widest activation, 16x16x4 after the
/// transposed conv, is 4 KiB an input: a 16 KiB binding holds 4, while its largest parameter
/// (the first dense layer's 24x96 weights, 9 KiB) fits.
const EVERY_LAYER: &str = r#"
input = [24]
layers = [
    { type = "dense", units = 96 },
    { type = "batch_norm", momentum = 0.8 },
    { type = "leaky_relu", alpha = 0.2 },
    { type = "reshape", shape = [4, 4, 6] },
    { type = "dropout", rate = 0.3 },
    { type = "upsample2x" },
    { type = "conv2d", filters = 5, kernel = 3, padding = "same" },
    { type = "batch_norm", momentum = 0.9 },
    { type = "relu" },
    { type = "conv_transpose2d", filters = 4, kernel = 4, stride = 2, padding = "same" },
    { type = "tanh" },
    { type = "avg_pool2x2" },
    { type = "dropout", rate = 0.5 },
    { type = "conv2d", filters = 1, kernel = 3, padding = "same" },
    { type = "flatten" },
    { type = "dense", units = 1 },
    { type = "sigmoid" },
]
"#;

/// Activations larger than a storage binding are split, never assumed to fit: with 16 KiB
/// bindings a batch of 11 runs in chunks of 4, 4 and 3 inputs, and its training pass (output,
/// every parameter gradient, the input gradient and batch norm's moving statistics) matches
/// the CPU reference's pass over the whole batch, on every adapter.
#[test]
fn activations_over_the_binding_limit_run_in_chunks() {
    let spec: NetSpec = toml::from_str(EVERY_LAYER).unwrap();
    spec.check().unwrap();
    let batch = 11;
    let small = 16 << 10;
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: small,
        max_buffer_size: small,
        ..wgpu::Limits::default()
    };
    let params = spec.init_params(3);
    let mut rng = common::rng(4);
    let input = common::random_vec(&mut rng, batch * spec.input[0], -1.0, 1.0);
    let output_grad = common::random_vec(&mut rng, batch, -1.0, 1.0);
    let step = StepUniform::new(7, 9);
    let mut cpu_net = CpuNet { spec: spec.clone(), params: params.clone() };
    let acts = cpu_net.forward(batch, &input, Mode::Training, 0, &step);
    let (want_grads, want_dx) = cpu_net.backward(batch, &acts, output_grad.clone(), true, 0, &step);
    for reference in common::gpus() {
        let _gl = common::serialize_gl(reference);
        let gpu = same_adapter(reference, limits.clone());
        let on = common::describe(&gpu);
        assert_eq!(batch_chunks(&gpu, &spec, batch), [4, 4, 3], "{on}");
        let net = Net::new(&gpu, spec.clone(), &params);
        let grads = net.zeros_like_trainable(&gpu);
        let (input_t, dx) = (gpu.upload(&input), gpu.zeros(input.len()));
        let all = Grads { params: Some(&grads), input: Some(&dx), ..Grads::default() };
        let step_buffer = gpu.uniform(&step);
        let pass = net.pass(&gpu, batch, &input_t, Mode::Training, all, 0, &step_buffer);
        gpu.write(&pass.output_grad, &output_grad);
        gpu.run(&[pass.forward, pass.backward].concat());
        let mut failures = Vec::new();
        let mut check = |name: &str, got: &gan_gpu::gpu::Tensor, want: &[f32]| {
            if let Err(e) = compare(name, &gpu.read(got), want, REDUCTION) {
                failures.push(e);
            }
        };
        check("output", &pass.output, acts.output());
        check("input gradient", &dx, &want_dx);
        let trainable = net.trainable();
        for ((g, want), &i) in grads.iter().zip(&want_grads).zip(&trainable) {
            check(&format!("gradient of {}", net.shapes[i].name), g, want);
        }
        for (i, shape) in net.shapes.iter().enumerate().filter(|(_, s)| !s.trainable) {
            check(&shape.name, &net.params[i], &cpu_net.params[i]);
        }
        assert!(failures.is_empty(), "on {on}:\n{}", failures.join("\n"));
    }
}

/// The trainer splits what a pass cannot bind whole: at 3 MiB bindings dcgan's generator
/// (28x28x128 activations, 392 KiB an image) and discriminator (14x14x64, 49 KiB) both run
/// their batches in chunks, and two steps give the metrics of the unsplit passes. Only the
/// order of the chunks' sums differs, hence the tolerance.
#[test]
fn a_batch_over_the_binding_limit_trains_in_chunks() {
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 3 << 20,
        max_buffer_size: 3 << 20,
        ..wgpu::Limits::default()
    };
    let mut spec = gan::preset("dcgan").unwrap();
    spec.recipe.batch = 36;
    spec.recipe.g_batch = Some(8);
    let gpu = same_adapter(&common::gpus()[0], limits.clone());
    let d_chunks = batch_chunks(&gpu, &spec.discriminator, 72);
    let g_chunks = batch_chunks(&gpu, &spec.generator, 8);
    assert!(d_chunks.len() > 1 && g_chunks.len() > 1, "D {d_chunks:?}, G {g_chunks:?}");
    trains_the_same_within(limits, &spec, 2, 6, 1e-5);
}
