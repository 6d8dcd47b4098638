//! CPU twin of `kernels::gather`.

/// out[i*row_len + j] = images[(indices[i] - first_row)*row_len + j] * scale + offset, for the
/// i < count whose index falls in the shard `first_row..first_row + rows` that `images` holds:
/// a batch of rows from a byte dataset, mapped to the pixel range. Other rows are left as
/// they are.
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    images: &[u8],
    first_row: usize,
    rows: usize,
    indices: &[u32],
    out: &mut [f32],
    count: usize,
    row_len: usize,
    scale: f32,
    offset: f32,
) {
    for (i, &index) in indices[..count].iter().enumerate() {
        let Some(row) = (index as usize).checked_sub(first_row).filter(|&r| r < rows) else {
            continue;
        };
        let row = &images[row * row_len..][..row_len];
        for (o, &byte) in out[i * row_len..][..row_len].iter_mut().zip(row) {
            *o = byte as f32 * scale + offset;
        }
    }
}

/// out[i] = labels[indices[i]]: the labels of a batch gathered with the same indices as its rows.
pub fn gather_labels(labels: &[u8], indices: &[u32], out: &mut [u32], count: usize) {
    for (o, &index) in out[..count].iter_mut().zip(&indices[..count]) {
        *o = labels[index as usize] as u32;
    }
}
