//! Shared by the integration tests: the GPUs to test on, random data, poisoned outputs.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use gan_gpu::gpu::{BackendChoice, Gpu, GpuOptions};
use gan_gpu::kernels::{Activation, Fused};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Every nonlinearity, for the tests of the kernels that apply them.
pub const ACTIVATIONS: [Activation; 4] =
    [Activation::Relu, Activation::LeakyRelu { alpha: 0.2 }, Activation::Tanh, Activation::Sigmoid];

/// What a matmul's or conv's stores apply: the activation, or its derivative at `act_out`.
pub fn fused<Y>(activation: Option<Activation>, act_out: Option<Y>) -> Option<Fused<Y>> {
    let act = activation?;
    Some(match act_out {
        Some(y) => Fused::Gradient(act, y),
        None => Fused::Activation(act),
    })
}

/// Every adapter to run kernel tests on: one per backend the machine offers (Vulkan, GL, ...),
/// and for adapters with fast-path features a second device forced onto the portable kernels.
/// GAN_GPU_TEST_BACKENDS=vulkan,gl makes a missing backend a failure instead of a skip.
pub fn gpus() -> &'static [Arc<Gpu>] {
    static GPUS: OnceLock<Vec<Arc<Gpu>>> = OnceLock::new();
    GPUS.get_or_init(|| {
        let required: Vec<String> = std::env::var("GAN_GPU_TEST_BACKENDS")
            .map(|s| s.split(',').map(|b| b.trim().to_lowercase()).collect())
            .unwrap_or_default();
        let mut gpus = Vec::new();
        for (backend, name) in [
            (BackendChoice::Vulkan, "vulkan"),
            (BackendChoice::Gl, "gl"),
            (BackendChoice::Metal, "metal"),
            (BackendChoice::Dx12, "dx12"),
        ] {
            let opts = GpuOptions {
                backend,
                adapter: None,
                portable_kernels: false,
                ..Default::default()
            };
            match Gpu::new(&opts) {
                Ok(gpu) => {
                    let fast = gpu.caps.subgroup_size.is_some();
                    gpus.push(gpu);
                    if fast {
                        let portable = GpuOptions { portable_kernels: true, ..opts };
                        gpus.push(Gpu::new(&portable).unwrap());
                    }
                }
                Err(e) if required.iter().any(|r| r == name) => {
                    panic!("GAN_GPU_TEST_BACKENDS asks for {name}, but: {e:#}")
                }
                Err(_) => {}
            }
        }
        assert!(!gpus.is_empty(), "no GPU adapter at all: install mesa-vulkan-drivers");
        // Straight to stderr, past the test harness's capture, so CI logs show the adapters.
        let names: Vec<String> = gpus.iter().map(|g| describe(g)).collect();
        let exe = std::env::args().next().unwrap_or_default();
        let binary = Path::new(&exe).file_name().unwrap_or_default().to_string_lossy().into_owned();
        let line = format!("[{binary}] GPU tests run on: {}\n", names.join("; "));
        let _ = std::io::stderr().write_all(line.as_bytes());
        gpus
    })
}

/// "adapter (backend) [matmul: subgroup, conv: subgroup]".
pub fn describe(gpu: &Gpu) -> String {
    format!("{} [{}]", gpu.describe(), gpu.variants().describe())
}

/// Held while a test uses a GL device: tests run in parallel threads, and wgpu's GL backend
/// gives up on its context lock after 6 s, which one llvmpipe shader compile can exceed.
pub fn serialize_gl(gpu: &Gpu) -> Option<MutexGuard<'static, ()>> {
    static GL: Mutex<()> = Mutex::new(());
    (gpu.info.backend == wgpu::Backend::Gl).then(|| GL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs `body` on every test GPU, saying which adapter and kernel set each run used.
pub fn on_every_gpu(test: &str, body: impl Fn(&Gpu)) {
    for gpu in gpus() {
        let _gl = serialize_gl(gpu);
        eprintln!("{test}: on {}", describe(gpu));
        body(gpu);
    }
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [lo, hi) with no exact zeros (a zero hides a missed term).
pub fn random_vec(rng: &mut StdRng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len)
        .map(|_| {
            loop {
                let v = rng.random_range(lo..hi);
                if v != 0.0 {
                    break v;
                }
            }
        })
        .collect()
}

/// Output buffer contents that no kernel writes: any element left untouched fails the compare.
pub fn poison(len: usize) -> Vec<f32> {
    vec![f32::NAN; len]
}

/// A tensor of PyTorch's reference values from `ops.safetensors` (GAN_GPU_FIXTURES, or
/// ../shared/fixtures beside the checkout), with its shape.
pub fn fixture(name: &str) -> (Vec<f32>, Vec<usize>) {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = FILE.get_or_init(|| {
        let path = std::env::var("GAN_GPU_FIXTURES").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/ops.safetensors").into()
        });
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixtures at {path}: {e}"))
    });
    let tensors = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let view = tensors.tensor(name).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "fixture {name}");
    let data =
        view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (data, view.shape().to_vec())
}
