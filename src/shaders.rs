//! The WGSL modules, compiled into the binary; one file per kernel family.

use crate::gpu::Shader;

macro_rules! shader {
    ($name:literal) => {
        Shader { name: $name, source: include_str!(concat!("../shaders/", $name)) }
    };
    // A module that applies activations: activate.wgsl's nonlinearities, then its own file.
    ($name:literal, activating) => {
        Shader {
            name: $name,
            source: concat!(
                include_str!("../shaders/activate.wgsl"),
                include_str!(concat!("../shaders/", $name))
            ),
        }
    };
}

/// Files that are parts of other modules rather than modules of their own.
pub const PARTS: &[&str] = &["activate.wgsl"];

pub const MATMUL: Shader = shader!("matmul.wgsl", activating);
pub const BIAS: Shader = shader!("bias.wgsl");
pub const ACTIVATION: Shader = shader!("activation.wgsl", activating);
pub const LOSS: Shader = shader!("loss.wgsl");
pub const OPTIM: Shader = shader!("optim.wgsl");
pub const RNG: Shader = shader!("rng.wgsl");
pub const GATHER: Shader = shader!("gather.wgsl");
pub const METRICS: Shader = shader!("metrics.wgsl");
pub const CONV: Shader = shader!("conv.wgsl", activating);
pub const POOL: Shader = shader!("pool.wgsl");
pub const BATCHNORM: Shader = shader!("batchnorm.wgsl");

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
    &POOL,
    &BATCHNORM,
];
