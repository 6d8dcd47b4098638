//! Host side of `shaders/matmul.wgsl`: C = op(A)·op(B) (+ bias), for dense layers.
//!
//! Three variants: `matmul_subgroup` for devices with 8-lane subgroups (lavapipe on AVX2),
//! which shares loaded A rows across lanes with subgroupBroadcast, and for every device
//! `matmul_portable`, which blocks registers without sharing, and `matmul_tiled`, which stages
//! tiles in workgroup memory (for discrete GPUs). `Gpu::variants` says which runs;
//! [`crate::tune`] measures each where more than one can. A product with one column (n = 1)
//! and A stored [m,k] runs `matvec` on every device instead (`matvec_split` with the slices
//! family's many slices). Transposes, bias and vec4 loads are WGSL override constants, so each
//! combination is its own specialised pipeline.

use bytemuck::{Pod, Zeroable};

use super::activation::FusedStores;
use super::{Fused, flag, slicing, tiled_workgroup_side};
use crate::gpu::{Dispatch, Gpu, KernelCaps, Op, Shader, Tensor, Variant};
use crate::shaders;

/// Subgroup sizes the fast matmul is written for.
pub const SUBGROUP_SIZES: &[u32] = &[8];

/// Rows x columns of C that one workgroup computes, per variant (8 lanes of 32 x 4 in
/// `matmul_subgroup`, 8 x 8 invocations of 8 x 4 in `matmul_portable`).
const SUBGROUP_TILE: (usize, usize) = (32, 32);
const PORTABLE_TILE: (usize, usize) = (64, 32);
/// Invocations per workgroup of `matvec` (4 rows of C each; MATVEC_WG in matmul.wgsl).
const MATVEC_WG: u32 = 64;

/// The WGSL module for a device with these capabilities: the whole file where subgroups are
/// available, else its portable part.
fn module(caps: &KernelCaps) -> Shader {
    if caps.subgroup_size.is_some() {
        return shaders::MATMUL;
    }
    shaders::MATMUL.portable_part("matmul.wgsl (portable part)")
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
}

/// C[m,n] = f(op(A)·op(B) (+ bias[n] added to every row when Some)) (+ C's own values when
/// `accumulate`), f what is `fused` into the stores when Some: the activation after a dense
/// layer (the layer and its activation in one pass), or the derivative of the one before it,
/// when C is the gradient at that activation's output. A is stored [m,k] row-major, or [k,m]
/// when `trans_a`; B is stored [k,n], or [n,k] when `trans_b`. `c` must be a tensor of its own
/// (wgpu rejects binding it both read-only and writable).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
    fused: Option<Fused<&Tensor>>,
) -> Dispatch {
    let transposes = (trans_a, trans_b);
    launch(gpu, a, b, bias, c, None, (m, n, k), transposes, accumulate, fused)
}

/// The weight and bias gradients of a dense layer y = x·W + b over a batch: dw[inputs,
/// outputs] = xᵀ·dy and db[outputs] = dy's column sums (each plus its own values when
/// `accumulate`), x [batch, inputs], dy [batch, outputs]. One pass where the device allows a
/// fifth storage buffer per shader stage (WebGPU's default allows 8, downlevel devices 4), else
/// the matmul and then bias_grad.
#[allow(clippy::too_many_arguments)]
pub fn matmul_weight_grad(
    gpu: &Gpu,
    x: &Tensor,
    dy: &Tensor,
    dw: &Tensor,
    db: &Tensor,
    batch: usize,
    inputs: usize,
    outputs: usize,
    accumulate: bool,
) -> Vec<Op> {
    let shape = (inputs, outputs, batch);
    let (trans_a, _) = layout(shape, (true, false));
    let one_pass =
        gpu.limits.max_storage_buffers_per_shader_stage >= 5 && !runs_matvec(outputs, trans_a);
    let sums = one_pass.then_some(db);
    let mut ops: Vec<Op> =
        vec![launch(gpu, x, dy, None, dw, sums, shape, (true, false), accumulate, None).into()];
    if !one_pass {
        ops.extend(super::bias::bias_grad(gpu, dy, db, batch, outputs, accumulate));
    }
    ops
}

/// The stored layouts matmul reads, (trans_a, trans_b), for the ones asked for: a vector is the
/// same bytes whether stored as a row or as a column, so take the layout whose row runs along
/// the longer side, so that it can be read with vec4 loads.
fn layout((m, n, k): (usize, usize, usize), (trans_a, trans_b): (bool, bool)) -> (bool, bool) {
    let trans_a = if m == 1 || k == 1 { k == 1 } else { trans_a };
    let trans_b = if n == 1 || k == 1 { n == 1 } else { trans_b };
    (trans_a, trans_b)
}

/// Whether a product with `n` columns and A's stored layout runs `matvec`: a tile of 32 columns
/// would have one live, for every variant alike. Not with A stored [k,m]: there lavapipe ran
/// matvec 10-20x slower than the tiles at m = 128, 512 and 1024 (and faster at 256, 384, 640),
/// for reasons not found.
fn runs_matvec(n: usize, trans_a: bool) -> bool {
    n == 1 && !trans_a
}

/// One matmul dispatch; with `column_sums`, also writing op(B)'s column sums there (plus their
/// values when `accumulate`; not for matvec products).
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    column_sums: Option<&Tensor>,
    (m, n, k): (usize, usize, usize),
    transposes: (bool, bool),
    accumulate: bool,
    fused: Option<Fused<&Tensor>>,
) -> Dispatch {
    assert!(m > 0 && n > 0 && k > 0, "matmul of an empty matrix: {m}x{k} · {k}x{n}");
    assert!(
        a.len >= m * k && b.len >= k * n && c.len >= m * n,
        "matmul {m}x{k} · {k}x{n}: tensors of {}, {}, {} elements",
        a.len,
        b.len,
        c.len
    );
    if let Some(bias) = bias {
        assert!(bias.len >= n, "matmul: bias of {} elements for n = {n}", bias.len);
    }
    let (trans_a, trans_b) = layout((m, n, k), transposes);
    // Row length of each operand as stored: vec4 loads need it to be a multiple of 4, and the
    // operand must fit a texture (or be read through a quad view).
    let vec_a = if trans_a { m } else { k } % 4 == 0 && gpu.gemm_quads_fit(a);
    let vec_b = if trans_b { k } else { n } % 4 == 0 && gpu.gemm_quads_fit(b);
    let stores = FusedStores::new(gpu, bias, fused, (m * n, n), accumulate, a);
    // Workgroups covering C in tiles of (rows, columns).
    let tiles = |(tile_m, tile_n): (usize, usize)| {
        let groups = [n.div_ceil(tile_n), m.div_ceil(tile_m), 1];
        let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
        assert!(groups[0] <= max && groups[1] <= max, "matmul {m}x{n}: too many workgroups");
        groups.map(|g| g as u32)
    };
    let tiled_wg = tiled_workgroup_side(m.div_ceil(128) * n.div_ceil(128));
    let (entry, groups) = match gpu.variants().matmul {
        _ if runs_matvec(n, trans_a) && slicing(gpu).split_matvec => {
            ("matvec_split", gpu.grid(m.div_ceil(4), 1))
        }
        _ if runs_matvec(n, trans_a) => ("matvec", gpu.grid(m.div_ceil(4), MATVEC_WG)),
        Variant::Subgroup => ("matmul_subgroup", tiles(SUBGROUP_TILE)),
        Variant::Portable => ("matmul_portable", tiles(PORTABLE_TILE)),
        Variant::Tiled => ("matmul_tiled", tiles((8 * tiled_wg as usize, 8 * tiled_wg as usize))),
        // Gpu::set_variants lets matmul take only the three above.
        other => unreachable!("{other:?} is not a matmul variant"),
    };
    if let Some(sums) = column_sums {
        assert!(!entry.starts_with("matvec"), "matmul: column sums of a matvec product");
        assert!(sums.len >= n, "matmul: column sums of {} elements for n = {n}", sums.len);
    }
    let entry = match column_sums {
        Some(_) => format!("{entry}_column_sums"),
        None => entry.to_string(),
    };
    let mut constants = vec![
        ("TRANS_A", flag(trans_a)),
        ("TRANS_B", flag(trans_b)),
        ("HAS_BIAS", flag(bias.is_some())),
        ("VEC_A", flag(vec_a)),
        ("VEC_B", flag(vec_b)),
    ];
    if entry.starts_with("matmul_tiled") {
        constants.push(("TILED_WG", tiled_wg as f64));
    }
    constants.extend(stores.constants);
    let pipeline = gpu.pipeline(&gpu.gemm_module(module(&gpu.caps)), &entry, &constants);
    let params = gpu.uniform(&Params { m: m as u32, n: n as u32, k: k as u32 });
    let (a4, b4) = (gpu.gemm_quads(a, vec_a), gpu.gemm_quads(b, vec_b));
    let mut bindings = vec![
        params.as_entire_binding(),
        a.binding(),
        a4.binding(),
        b.binding(),
        b4.binding(),
        stores.epilogue.binding(),
        c.binding(),
        stores.e4.binding(),
    ];
    bindings.extend(column_sums.map(Tensor::binding));
    gpu.dispatch("matmul", &pipeline, &bindings, groups).reading(&[&a4, &b4, &stores.e4])
}
