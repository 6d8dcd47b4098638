//! Host side of `shaders/gather.wgsl`: a training batch gathered from the dataset, which
//! lives on the GPU as bytes packed four to a u32 word (little-endian).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders;

const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    count: u32,
    row_len: u32,
    scale: f32,
    offset: f32,
}

/// out[i*row_len + j] = (byte indices[i]*row_len + j of `images`) * scale + offset, for
/// i < count and j < row_len. The indices are not checked: each must be below the number of
/// rows in `images`.
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    gpu: &Gpu,
    images: &Tensor,
    indices: &Tensor,
    out: &Tensor,
    count: usize,
    row_len: usize,
    scale: f32,
    offset: f32,
) -> Dispatch {
    assert!(count <= indices.len && count * row_len <= out.len, "gather_rows: tensors too small");
    assert!(row_len > 0 && row_len <= images.len * 4, "gather_rows: row of {row_len} bytes");
    let params = gpu.uniform(&Params {
        count: u32::try_from(count).unwrap(),
        row_len: row_len as u32,
        scale,
        offset,
    });
    let pipeline = gpu.pipeline(&shaders::GATHER, "gather_rows", &[]);
    gpu.dispatch(
        "gather_rows",
        &pipeline,
        &[images.binding(), indices.binding(), out.binding(), params.as_entire_binding()],
        gpu.grid(count * row_len.div_ceil(4), WG),
    )
}

/// out[i] = byte indices[i] of `labels` (bytes packed four to a word, as for [`gather_rows`]),
/// as a u32, for i < count: the labels of a batch gathered with the same indices as its rows.
/// The indices are not checked: each must be below the number of labels.
pub fn gather_labels(
    gpu: &Gpu,
    labels: &Tensor,
    indices: &Tensor,
    out: &Tensor,
    count: usize,
) -> Dispatch {
    assert!(count <= indices.len && count <= out.len, "gather_labels: tensors too small");
    let params = gpu.uniform(&[u32::try_from(count).unwrap()]);
    let pipeline = gpu.pipeline(&shaders::GATHER, "gather_labels", &[]);
    gpu.dispatch(
        "gather_labels",
        &pipeline,
        &[labels.binding(), indices.binding(), out.binding(), params.as_entire_binding()],
        gpu.grid(count, WG),
    )
}
