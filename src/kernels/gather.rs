//! Host side of `shaders/gather.wgsl`: a training batch gathered from the dataset, which
//! lives on the GPU as bytes packed four to a u32 word (little-endian), split into shards
//! that each fit one storage binding.

use bytemuck::{Pod, Zeroable};

use super::flag;
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
    first_row: u32,
    rows: u32,
}

/// out[i*row_len + j] = (byte (indices[i] - first_row)*row_len + j of `images`) * scale +
/// offset, for i < count and j < row_len, where `images` holds rows `first_row..first_row +
/// rows` of a dataset; rows whose index falls outside are left to the other shards.
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    gpu: &Gpu,
    images: &Tensor,
    first_row: usize,
    rows: usize,
    indices: &Tensor,
    out: &Tensor,
    count: usize,
    row_len: usize,
    scale: f32,
    offset: f32,
) -> Dispatch {
    assert!(count <= indices.len && count * row_len <= out.len, "gather_rows: tensors too small");
    assert!(row_len > 0 && rows * row_len <= images.len * 4, "gather_rows: shard too small");
    let params = gpu.uniform(&Params {
        count: u32::try_from(count).unwrap(),
        row_len: row_len as u32,
        scale,
        offset,
        first_row: u32::try_from(first_row).unwrap(),
        rows: rows as u32,
    });
    let whole_words = [("WHOLE_WORDS", flag(row_len.is_multiple_of(4)))];
    let pipeline = gpu.pipeline(&shaders::GATHER, "gather_rows", &whole_words);
    gpu.dispatch(
        "gather_rows",
        &pipeline,
        &[images.binding(), indices.binding(), out.binding(), params.as_entire_binding()],
        gpu.grid(count * row_len.div_ceil(4), WG),
    )
}

/// Bytes packed four to a little-endian u32 word, the form the gather kernel reads.
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut word = [0u8; 4];
            word[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(word)
        })
        .collect()
}

/// Rows of bytes (a dataset's images) on the GPU, in shards of whole rows that each fit one
/// storage binding and one buffer, so no dataset is assumed to fit a single binding.
pub struct PackedRows {
    /// (first row, rows, packed bytes) of each shard.
    shards: Vec<(usize, usize, Tensor)>,
    row_len: usize,
}

impl PackedRows {
    /// Uploads `bytes` (rows of `row_len`) in shards as large as the device allows.
    pub fn upload(gpu: &Gpu, bytes: &[u8], row_len: usize) -> PackedRows {
        PackedRows::upload_in_shards(gpu, bytes, row_len, gpu.largest_binding() as usize)
    }

    /// Uploads `bytes` in shards of at most `shard_bytes` bytes each.
    pub fn upload_in_shards(
        gpu: &Gpu,
        bytes: &[u8],
        row_len: usize,
        shard_bytes: usize,
    ) -> PackedRows {
        assert!(row_len > 0 && bytes.len().is_multiple_of(row_len));
        // Whole words: a shard of `rows_per_shard` rows pads its last word.
        let rows_per_shard = (shard_bytes / 4 * 4) / row_len;
        assert!(rows_per_shard > 0, "a row of {row_len} bytes exceeds a {shard_bytes}-byte shard");
        let shards = bytes
            .chunks(rows_per_shard * row_len)
            .enumerate()
            .map(|(k, shard)| {
                (k * rows_per_shard, shard.len() / row_len, gpu.upload_u32(&pack_bytes(shard)))
            })
            .collect();
        PackedRows { shards, row_len }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// `gather_rows` over every shard: out[i] = row indices[i] * scale + offset, i < count.
    pub fn gather(
        &self,
        gpu: &Gpu,
        indices: &Tensor,
        out: &Tensor,
        count: usize,
        scale: f32,
        offset: f32,
    ) -> Vec<Dispatch> {
        self.shards
            .iter()
            .map(|(first_row, rows, images)| {
                gather_rows(
                    gpu,
                    images,
                    *first_row,
                    *rows,
                    indices,
                    out,
                    count,
                    self.row_len,
                    scale,
                    offset,
                )
            })
            .collect()
    }
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
