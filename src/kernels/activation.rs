//! Host side of `shaders/activation.wgsl`: elementwise nonlinearities and their gradients,
//! in place, 4 elements per invocation. One pipeline per nonlinearity, chosen by override
//! constants.

use bytemuck::{Pod, Zeroable};

use super::{Activation, Fused, flag, mirrors, store_constants};
use crate::gpu::{Dispatch, Gpu, QuadTexture, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    len: u32,
}

/// activate.wgsl's ACT code and ALPHA for a nonlinearity, or for none (the identity).
fn constants(act: Option<Activation>) -> [(&'static str, f64); 2] {
    let (code, alpha) = match act {
        None => (0, 0.0),
        Some(Activation::Relu) => (1, 0.0),
        Some(Activation::LeakyRelu { alpha }) => (2, alpha),
        Some(Activation::Tanh) => (3, 0.0),
        Some(Activation::Sigmoid) => (4, 0.0),
    };
    [("ACT", code as f64), ("ALPHA", alpha as f64)]
}

/// What a matmul or conv kernel specialises and binds for the `bias` and what is `fused` into
/// its stores of `out_len` values in rows of `row_len` (activate.wgsl's and store.wgsl's
/// constants, and the `epilogue` and `e4` bindings of matmul.wgsl and conv.wgsl).
pub(crate) struct FusedStores<'a> {
    /// ACT, ALPHA, GRADIENT, VEC_EPILOGUE, VEC_C and ACCUMULATE.
    pub constants: [(&'static str, f64); 6],
    /// The bias, or for a gradient the activation's output (never both), else `unused`.
    pub epilogue: &'a Tensor,
    /// The activation output's texture mirror where its rows are whole quads (VEC_EPILOGUE),
    /// else a stand-in.
    pub e4: QuadTexture,
}

impl<'a> FusedStores<'a> {
    /// `accumulate`: the stores add to the output's values. `unused`: any read-only tensor of
    /// the dispatch, bound where the kernel reads nothing.
    pub fn new(
        gpu: &Gpu,
        bias: Option<&'a Tensor>,
        fused: Option<Fused<&'a Tensor>>,
        (out_len, row_len): (usize, usize),
        accumulate: bool,
        unused: &'a Tensor,
    ) -> FusedStores<'a> {
        let [act, alpha] = constants(fused.map(|f| f.activation()));
        let act_out = match fused {
            Some(Fused::Gradient(_, y)) => Some(y),
            _ => None,
        };
        if let Some(y) = act_out {
            assert!(y.len >= out_len, "activation output of {} for {out_len} values", y.len);
            assert!(bias.is_none(), "a gradient with a bias");
        }
        let vec = act_out.is_some_and(|y| row_len.is_multiple_of(4) && gpu.gemm_quads_fit(y));
        let [vec_c, accumulates] = store_constants(row_len, accumulate);
        FusedStores {
            constants: [
                act,
                alpha,
                ("GRADIENT", flag(act_out.is_some())),
                ("VEC_EPILOGUE", flag(vec)),
                vec_c,
                accumulates,
            ],
            epilogue: bias.or(act_out).unwrap_or(unused),
            e4: gpu.gemm_quads(act_out.unwrap_or(unused), vec),
        }
    }
}

/// x = act(x) for the first `len` elements.
pub fn activation_forward(gpu: &Gpu, x: &Tensor, len: usize, act: Activation) -> Dispatch {
    assert!(len <= x.len, "activation_forward: {len} elements of {}", x.len);
    let params = gpu.uniform(&Params { len: u32::try_from(len).unwrap() });
    let ([x4], textures) = mirrors(gpu, [x]);
    let [act, alpha] = constants(Some(act));
    let constants = [act, alpha, ("TEXTURES", flag(textures))];
    let pipeline = gpu.pipeline(&shaders::ACTIVATION, "activation_forward", &constants);
    gpu.dispatch(
        "activation_forward",
        &pipeline,
        &[x.binding(), params.as_entire_binding(), x4.binding()],
        gpu.grid(len.div_ceil(4), WG),
    )
    .reading(&[&x4])
}

/// dy *= act'(.), the derivative written in terms of the forward output y
/// (ReLU and leaky ReLU: y > 0; tanh: 1 - y^2; sigmoid: y (1 - y)).
pub fn activation_backward(
    gpu: &Gpu,
    y: &Tensor,
    dy: &Tensor,
    len: usize,
    act: Activation,
) -> Dispatch {
    assert!(len <= y.len && len <= dy.len, "activation_backward: tensors too small");
    let params = gpu.uniform(&Params { len: u32::try_from(len).unwrap() });
    let ([y4, dy4], textures) = mirrors(gpu, [y, dy]);
    let [act, alpha] = constants(Some(act));
    let constants = [act, alpha, ("TEXTURES", flag(textures))];
    let pipeline = gpu.pipeline(&shaders::ACTIVATION, "activation_backward", &constants);
    gpu.dispatch(
        "activation_backward",
        &pipeline,
        &[y.binding(), dy.binding(), params.as_entire_binding(), y4.binding(), dy4.binding()],
        gpu.grid(len.div_ceil(4), WG),
    )
    .reading(&[&y4, &dy4])
}
