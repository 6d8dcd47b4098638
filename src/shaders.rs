//! The WGSL modules, compiled into the binary; one file per kernel family.

use crate::gpu::Shader;

macro_rules! shader {
    // A module, after the shared parts it uses (activate.wgsl's nonlinearities, texel.wgsl's
    // texture addressing, store.wgsl's output stores), in that order.
    ($name:literal $(, $part:literal)*) => {
        Shader {
            name: $name,
            source: concat!(
                $(include_str!(concat!("../shaders/", $part)),)*
                include_str!(concat!("../shaders/", $name))
            ),
        }
    };
}

/// Files that are parts of other modules rather than modules of their own.
pub const PARTS: &[&str] = &["activate.wgsl", "texel.wgsl", "store.wgsl"];

pub const MATMUL: Shader = shader!("matmul.wgsl", "activate.wgsl", "texel.wgsl", "store.wgsl");
pub const BIAS: Shader = shader!("bias.wgsl", "texel.wgsl");
pub const ACTIVATION: Shader = shader!("activation.wgsl", "activate.wgsl", "texel.wgsl");
pub const LOSS: Shader = shader!("loss.wgsl");
pub const OPTIM: Shader = shader!("optim.wgsl", "texel.wgsl");
pub const RNG: Shader = shader!("rng.wgsl", "texel.wgsl");
pub const GATHER: Shader = shader!("gather.wgsl");
pub const METRICS: Shader = shader!("metrics.wgsl");
pub const CONV: Shader = shader!("conv.wgsl", "activate.wgsl", "texel.wgsl", "store.wgsl");
pub const POOL: Shader = shader!("pool.wgsl", "texel.wgsl");
pub const BATCHNORM: Shader = shader!("batchnorm.wgsl", "texel.wgsl");
pub const SPLITS: Shader = shader!("splits.wgsl", "activate.wgsl", "texel.wgsl", "store.wgsl");

/// The modules whose kernels can read through quad views (see `Gpu::quad_views`).
pub const QUAD_VIEW_MODULES: &[&Shader] = &[&MATMUL, &CONV, &SPLITS];

/// Every module, for the validation tests.
pub const ALL: &[&Shader] = &[
    &MATMUL,
    &BIAS,
    &ACTIVATION,
    &LOSS,
    &OPTIM,
    &RNG,
    &GATHER,
    &METRICS,
    &CONV,
    &SPLITS,
    &POOL,
    &BATCHNORM,
];
