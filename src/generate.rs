//! Images from a trained generator: from noise drawn with a seed, or from given latent vectors.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::checkpoint::Checkpoint;
use crate::data;
use crate::gpu::{Gpu, Op, Tensor};
use crate::images;
use crate::kernels::StepUniform;
use crate::nn::gan::GanSpec;
use crate::nn::{Grads, Mode, Net, Pass};

/// Images per generator pass: large enough to keep the GPU busy, small enough for any device.
const CHUNK: usize = 1000;

/// `generate`'s noise for images from `first_image` on (an even index): RNG stream 0 at step
/// 0 from that image's element pair, so an image depends only on (seed, index), whatever the
/// chunks.
fn noise_step(first_image: usize, noise_dim: usize, seed: u32) -> StepUniform {
    assert!(first_image.is_multiple_of(2), "chunks of an even number of images");
    let first_pair = u32::try_from(first_image * noise_dim / 2).expect("fewer images");
    StepUniform { step: 0, seed, first_pair, _pad: 0 }
}

/// The checkpoint's generator (its moving average when it has one, see
/// [`Checkpoint::generator_params`]) recorded in inference mode for chunks of `chunk` images
/// of the noise in `noise`.
struct Chunks {
    noise: Tensor,
    step: wgpu::Buffer,
    pass: Pass,
    chunk: usize,
    image_len: usize,
}

impl Chunks {
    fn new(gpu: &Gpu, ck: &Checkpoint, count: usize) -> Chunks {
        let spec = &ck.spec;
        let generator = Net::new(gpu, spec.generator.clone(), ck.generator_params());
        // CHUNK is even, so that every chunk's noise starts on a whole RNG pair (see
        // noise_step); the pass itself splits what one binding cannot hold.
        let chunk = count.min(CHUNK);
        let noise = gpu.zeros(chunk * spec.noise_dim());
        let step = gpu.uniform(&StepUniform::default());
        let no_grads = Grads::default();
        let pass = generator.pass(gpu, chunk, &noise, Mode::Inference, no_grads, 0, &step);
        Chunks { noise, step, pass, chunk, image_len: spec.image_len() }
    }

    /// `count` images, chunk by chunk: `prepare(i)` sets up chunk i's noise, then `first`
    /// and the generator run.
    fn images(&self, gpu: &Gpu, count: usize, first: Vec<Op>, prepare: impl Fn(usize)) -> Vec<f32> {
        let mut ops = first;
        ops.extend(self.pass.forward.iter().cloned());
        let mut pixels = Vec::with_capacity(count * self.image_len);
        for i in 0..count.div_ceil(self.chunk) {
            prepare(i);
            gpu.run(&ops);
            let out = gpu.read(&self.pass.output);
            let wanted = (count - i * self.chunk).min(self.chunk) * self.image_len;
            pixels.extend_from_slice(&out[..wanted]);
        }
        pixels
    }
}

/// `count` images of the checkpoint's generator (its moving average when it has one, see
/// [`Checkpoint::generator_params`]) from noise drawn with `seed`, as pixels in the recipe's
/// range. Noise is drawn on the GPU by the same counter-based RNG as training.
pub fn generate(gpu: &Gpu, ck: &Checkpoint, count: usize, seed: u32) -> Vec<f32> {
    let chunks = Chunks::new(gpu, ck, count);
    let draw = ck.spec.recipe.noise.draw(gpu, &chunks.noise, 0, &chunks.step);
    let noise_dim = ck.spec.noise_dim();
    chunks.images(gpu, count, vec![draw.into()], |i| {
        let step = noise_step(i * chunks.chunk, noise_dim, seed);
        gpu.queue.write_buffer(&chunks.step, 0, bytemuck::bytes_of(&step));
    })
}

/// The latent vector of `seed`: the noise that [`generate`] draws for image 0 with that seed
/// (`spec.noise_dim()` values), drawn by the same GPU kernel.
pub fn latent(gpu: &Gpu, spec: &GanSpec, seed: u32) -> Vec<f32> {
    let noise = gpu.zeros(spec.noise_dim());
    let step = gpu.uniform(&noise_step(0, spec.noise_dim(), seed));
    gpu.run(&[spec.recipe.noise.draw(gpu, &noise, 0, &step).into()]);
    gpu.read(&noise)
}

/// The checkpoint's generator's images (as [`generate`] makes them) of the given latent
/// vectors, `spec.noise_dim()` values each.
pub fn generate_from_latents(gpu: &Gpu, ck: &Checkpoint, latents: &[f32]) -> Vec<f32> {
    let nz = ck.spec.noise_dim();
    assert!(latents.len().is_multiple_of(nz), "latents of {nz} values each");
    let count = latents.len() / nz;
    let chunks = Chunks::new(gpu, ck, count);
    let per_chunk = chunks.chunk * nz;
    chunks.images(gpu, count, Vec::new(), |i| {
        let end = ((i + 1) * per_chunk).min(latents.len());
        gpu.write(&chunks.noise, &latents[i * per_chunk..end]);
    })
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
