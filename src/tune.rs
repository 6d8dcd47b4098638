//! Kernel variants chosen by measurement. Where an adapter can run more than one variant of a
//! kernel family (subgroup and portable matmul, conv gathers and conv weight gradients on an
//! adapter with 8-lane subgroups; workgroup-memory tiles for each, few or many slices for long
//! sums and texture or buffer reads off CPU adapters; rows or GEMM tiles for one-channel convs
//! on every adapter), the first command that opens it times each variant on shapes the presets
//! run, after checking it against the CPU twin, and keeps the fastest. The reads change what
//! every kernel wants and cost copies that only whole steps show, so each read variant gets its
//! own kernel choices, and the two are compared on training steps. The choice is cached per
//! adapter, driver and kernel source, so later commands start at once and an edited shader or
//! a new driver is measured again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bench::{self, Kernel};
use crate::data::Dataset;
use crate::gpu::{Gpu, KernelCaps, Variant, Variants};
use crate::nn::gan;
use crate::shaders;
use crate::train::{self, Trainer};

/// A kernel family whose variant is chosen here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Matmul,
    /// Conv forward and input-gradient passes (Variants::conv).
    Conv,
    /// Conv weight gradients (Variants::conv_weight_grad).
    ConvWeightGrad,
    /// The passes of one-channel convs that the rows kernels can take
    /// (Variants::one_channel_conv).
    OneChannelConv,
    /// How long sums are cut into slices: weight and bias gradients, matrix-vector products,
    /// gathers over many channels (Variants::slices).
    Slices,
    /// Whether kernels read operands through texture mirrors (Variants::reads).
    Reads,
}

impl Family {
    /// In the order they are measured: each on the choices of those before it, so slices
    /// before the convs whose weight gradients they cut (few slices slowed an H200's dcgan
    /// step 2.7x, and would weigh on whichever conv variant they were timed with), and the
    /// reads first, each with the kernel families measured under it.
    pub const ALL: [Family; 6] = [
        Family::Reads,
        Family::Matmul,
        Family::Slices,
        Family::Conv,
        Family::ConvWeightGrad,
        Family::OneChannelConv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Conv => "conv",
            Family::ConvWeightGrad => "conv dw",
            Family::OneChannelConv => "one-channel conv",
            Family::Slices => "slices",
            Family::Reads => "reads",
        }
    }

    /// The variants of this family an adapter with these capabilities can run.
    pub fn candidates(self, caps: &KernelCaps) -> &'static [Variant] {
        match self {
            Family::Matmul | Family::Conv | Family::ConvWeightGrad => Variant::candidates(caps),
            Family::OneChannelConv => Variant::ONE_CHANNEL,
            Family::Slices => Variant::slices_candidates(caps),
            Family::Reads => Variant::reads_candidates(caps),
        }
    }

    fn with(self, variants: Variants, variant: Variant) -> Variants {
        match self {
            Family::Matmul => Variants { matmul: variant, ..variants },
            Family::Conv => Variants { conv: variant, ..variants },
            Family::ConvWeightGrad => Variants { conv_weight_grad: variant, ..variants },
            Family::OneChannelConv => Variants { one_channel_conv: variant, ..variants },
            Family::Slices => Variants { slices: variant, ..variants },
            Family::Reads => Variants { reads: variant, ..variants },
        }
    }

    /// The shapes a variant is timed on (`gan-gpu bench` syntax): mlp's largest dense layer
    /// forward, backward data and weight gradient; dcgan's second D conv and its G's transposed
    /// convs (the gathers for conv, the weight gradients for conv dw); dcgan's final 7x7 conv
    /// to one channel and dcgan-avgpool's first D conv from one (at a small batch, for GL
    /// adapters' sake), each with every pass; for the slices, dcgan-upsample's logit layer (a
    /// matrix-vector product over 8192 features), dcgan's 256 -> 128 transposed conv (its
    /// gathers split), its first D conv, dcgan-upsample's 64 -> 32 conv and dcgan's final
    /// conv (the one-channel rows kernel), each with every pass. The reads are timed on
    /// training steps instead ([`READS_MODELS`]).
    fn shapes(self) -> &'static [(Kernel, &'static str)] {
        match self {
            Family::Reads => &[],
            Family::Matmul => &[
                (Kernel::Matmul, "128,784,128,bias,tanh"),
                (Kernel::Matmul, "128,128,784,tb"),
                (Kernel::Matmul, "784,128,256,ta"),
            ],
            Family::Conv | Family::ConvWeightGrad => &[
                (Kernel::Conv, "16,14,14,64,64,3,2,same,bias,leaky_relu"),
                (Kernel::ConvTranspose, "16,7,7,128,128,4,2,same,bias,leaky_relu"),
            ],
            Family::OneChannelConv => &[
                (Kernel::Conv, "8,28,28,128,1,7,1,same,bias,sigmoid"),
                (Kernel::Conv, "8,28,28,1,8,5,1,valid,bias,relu"),
            ],
            Family::Slices => &[
                (Kernel::Matmul, "512,1,8192,bias"),
                (Kernel::ConvTranspose, "16,7,7,256,128,5,1,same"),
                (Kernel::Conv, "16,28,28,1,64,3,2,same,bias,leaky_relu"),
                (Kernel::Conv, "16,28,28,64,32,5,1,same,bias"),
                (Kernel::Conv, "16,28,28,128,1,7,1,same,bias,sigmoid"),
            ],
        }
    }
}

/// One variant's time: milliseconds summed over its family's shapes, or why it was excluded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub family: Family,
    pub variant: Variant,
    pub ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a device's variants came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Measured by an earlier command, read from this file.
    Cached(PathBuf),
    /// Measured now.
    Measured,
}

/// The variants a device runs, with the timings that chose them.
#[derive(Clone, Debug)]
pub struct Choice {
    pub variants: Variants,
    pub timings: Vec<Timing>,
    pub source: Source,
}

/// The cache file: one entry per adapter key.
#[derive(Default, Serialize, Deserialize)]
struct CacheFile {
    adapters: BTreeMap<String, CachedChoice>,
}

#[derive(Clone, Serialize, Deserialize)]
struct CachedChoice {
    variants: Variants,
    timings: Vec<Timing>,
}

const CACHE_FILE: &str = "kernel-variants.json";

/// Where the choices are cached: GAN_GPU_CACHE_DIR, else the user's cache directory.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("GAN_GPU_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|c| c.join("gan-gpu")))
}

/// What a cached choice is valid for: the adapter, its driver, the variants it can run,
/// whether kernels read texture mirrors, and the kernels' source (an edited shader is
/// measured again).
pub fn adapter_key(info: &wgpu::AdapterInfo, caps: &KernelCaps) -> String {
    let mut sources = Sha256::new();
    for shader in [shaders::MATMUL, shaders::CONV] {
        sources.update(shader.source.as_bytes());
    }
    let digest = sources.finalize();
    let names: Vec<String> = (Family::ALL.iter())
        .map(|f| f.candidates(caps).iter().map(|v| v.name()).collect::<Vec<_>>().join("+"))
        .collect();
    let reads = if caps.texture_mirrors { "" } else { " | buffer reads" };
    format!(
        "{} | {:?} | {} {} | {}{reads} | kernels {:02x}{:02x}{:02x}{:02x}",
        info.name,
        info.backend,
        info.driver,
        info.driver_info,
        names.join(" "),
        digest[0],
        digest[1],
        digest[2],
        digest[3]
    )
}

/// The choice an earlier command cached for the adapter `info` (opened with these `caps`).
pub fn cached(
    info: &wgpu::AdapterInfo,
    caps: &KernelCaps,
    cache_dir: &Path,
) -> Option<(Variants, Vec<Timing>)> {
    let hit = read_cache(&cache_dir.join(CACHE_FILE)).adapters.remove(&adapter_key(info, caps))?;
    Some((hit.variants, hit.timings))
}

/// What `gan-gpu devices` can say of an adapter without opening it: the choice an earlier
/// command cached in `cache_dir`.
pub fn known(
    info: &wgpu::AdapterInfo,
    caps: &KernelCaps,
    cache_dir: Option<&Path>,
) -> Option<Variants> {
    cached(info, caps, cache_dir?).map(|(variants, _)| variants)
}

/// The fastest variant of `family` among `timings`, ignoring excluded ones.
pub fn fastest(family: Family, timings: &[Timing]) -> Option<Variant> {
    timings
        .iter()
        .filter(|t| t.family == family)
        .filter_map(|t| Some((t.variant, t.ms?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(v, _)| v)
}

/// Chooses `gpu`'s variants and sets them: the cached choice for this adapter in `cache_dir`,
/// else (or when `remeasure`) a measured one, which is then cached. `on_measure` is called before measuring (for a progress line). A
/// cache that cannot be read or written costs a measurement, not an error.
pub fn choose(
    gpu: &Arc<Gpu>,
    cache_dir: Option<&Path>,
    remeasure: bool,
    on_measure: impl FnOnce(),
) -> Result<Choice> {
    let key = adapter_key(&gpu.info, &gpu.caps);
    let path = cache_dir.map(|d| d.join(CACHE_FILE));
    let mut cache = path.as_deref().map(read_cache).unwrap_or_default();
    if let (Some(path), Some(hit), false) = (&path, cache.adapters.get(&key), remeasure) {
        gpu.set_variants(hit.variants);
        let source = Source::Cached(path.clone());
        return Ok(Choice { variants: hit.variants, timings: hit.timings.clone(), source });
    }
    on_measure();
    let (variants, timings) = measure(gpu)?;
    gpu.set_variants(variants);
    if let Some(path) = &path {
        cache.adapters.insert(key, CachedChoice { variants, timings: timings.clone() });
        if let Err(e) = write_cache(path, &cache) {
            eprintln!("warning: could not cache the kernel variants in {}: {e:#}", path.display());
        }
    }
    Ok(Choice { variants, timings, source: Source::Measured })
}

/// Times every candidate variant of every family with more than one on `gpu`, in
/// [`Family::ALL`]'s order and on the choices made before it (each checked against the CPU
/// twin first; one that disagrees, or fails to run, is excluded) and returns the fastest of
/// each with all the timings: for each read variant the kernel families chosen under it, then
/// the read variant whose choices train fastest, with its own kernel timings. Leaves `gpu` on
/// the variants it had.
pub fn measure(gpu: &Arc<Gpu>) -> Result<(Variants, Vec<Timing>)> {
    let before = gpu.variants();
    let result = measure_reads(gpu, before);
    gpu.set_variants(before);
    result
}

fn measure_reads(gpu: &Arc<Gpu>, before: Variants) -> Result<(Variants, Vec<Timing>)> {
    let reads = Family::Reads.candidates(&gpu.caps);
    if let [only] = reads {
        return measure_kernels(gpu, Family::Reads.with(before, *only));
    }
    let mut read_timings = Vec::new();
    let mut choices = Vec::new();
    for &variant in reads {
        // A read variant none of whose kernels pass, or that cannot train, is excluded.
        let measured = measure_kernels(gpu, Family::Reads.with(before, variant)).and_then(
            |(variants, timings)| {
                gpu.set_variants(variants);
                Ok((time_steps(gpu)?, variants, timings))
            },
        );
        let (ms, error) = match &measured {
            Ok((ms, ..)) => (Some(*ms), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        read_timings.push(Timing { family: Family::Reads, variant, ms, error });
        if let Ok((_, variants, timings)) = measured {
            choices.push((variant, variants, timings));
        }
    }
    let best = fastest(Family::Reads, &read_timings)
        .with_context(|| format!("no read variant could train on {}", gpu.describe()))?;
    let (_, variants, kernel_timings) = choices.into_iter().find(|c| c.0 == best).unwrap();
    read_timings.extend(kernel_timings);
    Ok((variants, read_timings))
}

/// The kernel families of [`measure`] on `start`'s reads.
fn measure_kernels(gpu: &Gpu, start: Variants) -> Result<(Variants, Vec<Timing>)> {
    let mut chosen = start;
    let mut timings = Vec::new();
    for family in Family::ALL.into_iter().filter(|&f| f != Family::Reads) {
        let candidates = family.candidates(&gpu.caps);
        if let [only] = candidates {
            chosen = family.with(chosen, *only);
            continue;
        }
        for &variant in candidates {
            gpu.set_variants(family.with(chosen, variant));
            let (ms, error) = match time_family(gpu, family) {
                Ok(ms) => (Some(ms), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            };
            timings.push(Timing { family, variant, ms, error });
        }
        let best = fastest(family, &timings).with_context(|| {
            format!("no {family:?} kernel variant passed its check on {}", gpu.describe())
        })?;
        chosen = family.with(chosen, best);
    }
    Ok((chosen, timings))
}

/// The presets whose training steps the reads are timed on, at their recipes' batches: one of
/// dense layers, one of convs.
const READS_MODELS: [&str; 2] = ["mlp", "dcgan"];

/// Milliseconds per training step of [`READS_MODELS`] on `gpu`'s current variants, summed.
fn time_steps(gpu: &Arc<Gpu>) -> Result<f64> {
    let dataset = Dataset::pattern(1024, "a fixed pattern (timing the reads)");
    let mut total = 0.0;
    for name in READS_MODELS {
        let mut trainer = Trainer::new(gpu.clone(), gan::preset(name)?, &dataset, 0, None)?;
        total += train::time_iterations(&mut trainer, 2, 20);
    }
    Ok(total)
}

/// Milliseconds per call of `family`'s shapes, summed, on `gpu`'s current variants.
fn time_family(gpu: &Gpu, family: Family) -> Result<f64> {
    let mut rng = StdRng::seed_from_u64(0);
    let mut total = 0.0;
    for &(kernel, shape) in family.shapes() {
        for case in bench::cases(gpu, kernel, shape, &mut rng)? {
            // The conv family changes only the gathers, the conv dw family the weight gradients.
            let weight_grad = case.shape.ends_with(" dw");
            let skip = match family {
                Family::ConvWeightGrad => !weight_grad,
                Family::Conv => weight_grad,
                Family::Matmul | Family::Slices | Family::OneChannelConv | Family::Reads => false,
            };
            if skip {
                continue;
            }
            total += bench::measure(gpu, &case, None)?.ms;
        }
    }
    Ok(total)
}

fn read_cache(path: &Path) -> CacheFile {
    let Ok(text) = std::fs::read_to_string(path) else {
        return CacheFile::default();
    };
    serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!("warning: ignoring the unreadable kernel-variant cache {}: {e}", path.display());
        CacheFile::default()
    })
}

/// Writes the whole file through a temporary one and a rename, so that commands running side
/// by side never read half a file.
fn write_cache(path: &Path, cache: &CacheFile) -> Result<()> {
    let dir = path.parent().context("cache path without a directory")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{CACHE_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(cache)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
