//! (in progress)
use crate::gpu::KernelCaps;

/// Subgroup sizes the fast matmul is written for.
pub const SUBGROUP_SIZES: &[u32] = &[8];

pub fn variant_name(caps: &KernelCaps) -> &'static str {
    if caps.subgroup_size.is_some() { "subgroup" } else { "portable" }
}
