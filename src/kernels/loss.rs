//! Host side of `shaders/loss.wgsl`: sigmoid cross-entropy with logits, softmax cross-entropy
//! with integer labels (each with its gradient), and the softmax alone.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    grad_scale: f32,
}

/// losses[i] = max(z,0) - z*t + log(1+exp(-|z|)); dz[i] = (sigmoid(z) - t) * grad_scale
/// (grad_scale = 1/n gives the gradient of the mean). Targets may be anywhere in [0, 1].
pub fn bce_with_logits(
    gpu: &Gpu,
    z: &Tensor,
    t: &Tensor,
    dz: &Tensor,
    losses: &Tensor,
    n: usize,
    grad_scale: f32,
) -> Dispatch {
    assert!(
        n <= z.len && n <= t.len && n <= dz.len && n <= losses.len,
        "bce_with_logits: tensors too small"
    );
    let params = gpu.uniform(&Params { n: u32::try_from(n).unwrap(), grad_scale });
    let pipeline = gpu.pipeline(&shaders::LOSS, "bce_with_logits", &[]);
    gpu.dispatch(
        "bce_with_logits",
        &pipeline,
        &[z.binding(), t.binding(), dz.binding(), losses.binding(), params.as_entire_binding()],
        gpu.grid(n, WG),
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowParams {
    rows: u32,
    classes: u32,
    grad_scale: f32,
}

fn row_params(rows: usize, classes: usize, grad_scale: f32) -> RowParams {
    assert!(classes > 0, "softmax over rows of 0 classes");
    RowParams {
        rows: u32::try_from(rows).unwrap(),
        classes: u32::try_from(classes).unwrap(),
        grad_scale,
    }
}

/// For each of `rows` rows of `classes` logits and its label (u32, below `classes`, not
/// checked): losses[r] = -log softmax(logits[r])[labels[r]], and
/// dlogits[r] = (softmax(logits[r]) - onehot(labels[r])) * grad_scale
/// (grad_scale = 1/rows gives the gradient of the mean). The row's maximum is subtracted before exp, so any finite logits work.
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy(
    gpu: &Gpu,
    logits: &Tensor,
    labels: &Tensor,
    dlogits: &Tensor,
    losses: &Tensor,
    rows: usize,
    classes: usize,
    grad_scale: f32,
) -> Dispatch {
    let n = rows * classes;
    assert!(
        n <= logits.len && rows <= labels.len && n <= dlogits.len && rows <= losses.len,
        "softmax_cross_entropy: tensors too small"
    );
    let params = gpu.uniform(&row_params(rows, classes, grad_scale));
    let pipeline = gpu.pipeline(&shaders::LOSS, "softmax_cross_entropy", &[]);
    gpu.dispatch(
        "softmax_cross_entropy",
        &pipeline,
        &[
            logits.binding(),
            labels.binding(),
            dlogits.binding(),
            losses.binding(),
            params.as_entire_binding(),
        ],
        gpu.grid(rows, WG),
    )
}

/// probs[r] = softmax(logits[r]) for each of `rows` rows of `classes` logits, computed as
/// [`softmax_cross_entropy`] computes it.
pub fn softmax(
    gpu: &Gpu,
    logits: &Tensor,
    probs: &Tensor,
    rows: usize,
    classes: usize,
) -> Dispatch {
    let n = rows * classes;
    assert!(n <= logits.len && n <= probs.len, "softmax: tensors too small");
    let params = gpu.uniform(&row_params(rows, classes, 0.0));
    let pipeline = gpu.pipeline(&shaders::LOSS, "softmax", &[]);
    gpu.dispatch(
        "softmax",
        &pipeline,
        &[logits.binding(), probs.binding(), params.as_entire_binding()],
        gpu.grid(rows, WG),
    )
}
