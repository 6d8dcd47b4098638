//! Images from a trained generator.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::checkpoint::Checkpoint;
use crate::data;
use crate::gpu::Gpu;
use crate::images;
use crate::kernels::{StepUniform, rng};
use crate::nn::gan::Noise;
use crate::nn::{Grads, Mode, Net};

/// Images per generator pass: large enough to keep the GPU busy, small enough for any device.
const CHUNK: usize = 1000;

/// `count` images of the checkpoint's generator (its moving average when it has one, see
/// [`Checkpoint::generator_params`]) from noise drawn with `seed`, as pixels in the recipe's
/// range. Noise is drawn on the GPU by the same counter-based RNG as training.
pub fn generate(gpu: &Gpu, ck: &Checkpoint, count: usize, seed: u32) -> Vec<f32> {
    let spec = &ck.spec;
    let generator = Net::new(gpu, spec.generator.clone(), ck.generator_params());
    let chunk = count.min(CHUNK);
    let noise = gpu.zeros(chunk * spec.noise_dim());
    let step = gpu.uniform(&StepUniform::default());
    let draw = match spec.recipe.noise {
        Noise::Uniform { low, high } => {
            rng::rng_uniform(gpu, &noise, noise.len, low, high, 0, &step)
        }
        Noise::Normal { mean, std } => rng::rng_normal(gpu, &noise, noise.len, mean, std, 0, &step),
    };
    let no_grads = Grads { params: None, input: None };
    let pass = generator.pass(gpu, chunk, &noise, Mode::Inference, no_grads, 0, &step);
    let mut ops = vec![draw.into()];
    ops.extend(pass.forward.iter().cloned());
    let image_len = spec.image_len();
    let mut pixels = Vec::with_capacity(count * image_len);
    // Chunk i draws its noise at RNG step i, so the images depend only on (seed, index).
    for i in 0..count.div_ceil(chunk) {
        let uniform = StepUniform { step: i as u32, seed, _pad: [0; 2] };
        gpu.queue.write_buffer(&step, 0, bytemuck::bytes_of(&uniform));
        gpu.run(&ops);
        let out = gpu.read(&pass.output);
        let wanted = (count - i * chunk).min(chunk) * image_len;
        pixels.extend_from_slice(&out[..wanted]);
    }
    pixels
}

/// Writes OUT.png (a grid) and OUT.idx (IDX3 ubyte, readable by any MNIST loader).
pub fn write_images(
    gpu: &Gpu,
    ck: &Checkpoint,
    count: usize,
    seed: u32,
    out: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let pixels = images::to_bytes(&generate(gpu, ck, count, seed), ck.spec.recipe.pixel_range);
    let (png, idx) = (out.with_extension("png"), out.with_extension("idx"));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let [h, w, _] = ck.spec.image;
    images::save_grid(&png, &pixels, count, h, w)?;
    data::idx::write_images(&idx, count, h, w, &pixels)?;
    Ok((png, idx))
}
