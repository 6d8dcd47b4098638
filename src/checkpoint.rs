//! Checkpoints: both networks, the optimizers' moments, the step and the RNG state, and the
//! generator's moving average when training keeps one, in one safetensors file (readable by
//! PyTorch, numpy and others), written atomically.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::nn::gan::{GanSpec, Optimizer};
use crate::nn::spec::NetSpec;

const FORMAT: &str = "gan-gpu-checkpoint-2";

/// The tensors of one network and of its optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct NetState {
    /// Every tensor of `NetSpec::params` (trainable ones and state such as moving means).
    pub params: Vec<Vec<f32>>,
    /// Optimizer state: `moments[k][j]` is moment k (Adam: m, v; RMSprop: v) of the j-th
    /// trainable parameter.
    pub moments: Vec<Vec<Vec<f32>>>,
}

/// Names of the optimizer's state tensors, as checkpoints store them.
fn moment_names(opt: &Optimizer) -> &'static [&'static str] {
    match opt {
        Optimizer::Adam { .. } => &["adam_m", "adam_v"],
        Optimizer::Rmsprop { .. } => &["rmsprop_v"],
    }
}

/// The exponential moving average of the generator's tensors (`train --ema`).
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorEma {
    /// average = decay * average + (1 - decay) * weights after every step.
    pub decay: f32,
    /// One average per tensor of the generator's `NetSpec::params`.
    pub params: Vec<Vec<f32>>,
}

/// Checkpoint tensors of the average are named `EMA_PREFIX.<generator tensor>`.
const EMA_PREFIX: &str = "generator_ema";

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub spec: GanSpec,
    /// Training iterations completed.
    pub step: u64,
    /// Seed of the counter-based RNG: with `step`, the whole RNG state.
    pub seed: u32,
    pub generator: NetState,
    pub discriminator: NetState,
    /// Absent in checkpoints of runs without `--ema` (and in those written before it existed).
    pub ema: Option<GeneratorEma>,
}

/// (name, shape, trainable) of every tensor of a network, as checkpoints name them.
fn tensor_names(prefix: &str, spec: &NetSpec) -> Vec<(String, Vec<usize>, bool)> {
    spec.params()
        .into_iter()
        .map(|p| (format!("{prefix}.{}", p.name), p.shape, p.trainable))
        .collect()
}

impl Checkpoint {
    /// The generator's tensors that images come from: the moving average when the checkpoint
    /// has one, else the trained weights.
    pub fn generator_params(&self) -> &[Vec<f32>] {
        self.ema.as_ref().map_or(&self.generator.params, |ema| &ema.params)
    }

    /// Writes to a temporary file beside `path`, syncs it and renames it over `path`, so a crash
    /// at any moment leaves either the old checkpoint or the new one, never a torn file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        let r = &self.spec.recipe;
        for (prefix, spec, state, opt) in [
            ("generator", &self.spec.generator, &self.generator, &r.g_optimizer),
            ("discriminator", &self.spec.discriminator, &self.discriminator, &r.d_optimizer),
        ] {
            let mut trainable = 0;
            for (i, (name, shape, is_trainable)) in
                tensor_names(prefix, spec).into_iter().enumerate()
            {
                if is_trainable {
                    for (k, moment) in moment_names(opt).iter().enumerate() {
                        let data = &state.moments[k][trainable];
                        tensors.push((format!("{name}.{moment}"), shape.clone(), data));
                    }
                    trainable += 1;
                }
                tensors.push((name, shape, &state.params[i]));
            }
        }
        if let Some(ema) = &self.ema {
            for ((name, shape, _), data) in
                tensor_names(EMA_PREFIX, &self.spec.generator).into_iter().zip(&ema.params)
            {
                tensors.push((name, shape, data));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, shape, data)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("seed".to_string(), self.seed.to_string()),
            ("spec".to_string(), serde_json::to_string(&self.spec)?),
        ]);
        if let Some(ema) = &self.ema {
            // Rust prints an f32 with the fewest digits that parse back to the same bits.
            metadata.insert("ema_decay".to_string(), ema.decay.to_string());
        }
        let bytes = safetensors::serialize(views, Some(metadata))?;
        write_atomically(path, &bytes)
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| {
            format!("{} is not a gan-gpu checkpoint (damaged or another format)", path.display())
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        let (_, metadata) = SafeTensors::read_metadata(bytes)?;
        let meta = metadata.metadata().clone().unwrap_or_default();
        let field = |key: &str| meta.get(key).with_context(|| format!("metadata has no {key:?}"));
        if field("format")? != FORMAT {
            bail!("format {:?}, expected {FORMAT:?}", field("format")?);
        }
        let spec: GanSpec = serde_json::from_str(field("spec")?)?;
        spec.check()?;
        let tensors = SafeTensors::deserialize(bytes)?;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let view = tensors.tensor(name).with_context(|| format!("tensor {name} missing"))?;
            if view.dtype() != Dtype::F32 || view.shape() != shape {
                bail!(
                    "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                    view.dtype(),
                    view.shape()
                );
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect())
        };
        let state = |prefix: &str, spec: &NetSpec, opt: &Optimizer| -> Result<NetState> {
            let names = moment_names(opt);
            let mut state = NetState { params: vec![], moments: vec![vec![]; names.len()] };
            for (name, shape, trainable) in tensor_names(prefix, spec) {
                state.params.push(read(&name, &shape)?);
                if trainable {
                    for (k, moment) in names.iter().enumerate() {
                        state.moments[k].push(read(&format!("{name}.{moment}"), &shape)?);
                    }
                }
            }
            Ok(state)
        };
        let ema = match meta.get("ema_decay") {
            Some(decay) => Some(GeneratorEma {
                decay: decay.parse().with_context(|| format!("ema_decay {decay:?}"))?,
                params: tensor_names(EMA_PREFIX, &spec.generator)
                    .iter()
                    .map(|(name, shape, _)| read(name, shape))
                    .collect::<Result<_>>()?,
            }),
            None => None,
        };
        let r = &spec.recipe;
        Ok(Checkpoint {
            step: field("step")?.parse()?,
            seed: field("seed")?.parse()?,
            generator: state("generator", &spec.generator, &r.g_optimizer)?,
            discriminator: state("discriminator", &spec.discriminator, &r.d_optimizer)?,
            ema,
            spec,
        })
    }
}

/// Temp file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().context("checkpoint path has no file name")?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too; directories cannot be opened on Windows.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}
