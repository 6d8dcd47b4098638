//! CPU twin of `kernels::gather`.

/// out[i*row_len + j] = images[indices[i]*row_len + j] * scale + offset: a batch of rows
/// from a byte dataset, mapped to the pixel range.
pub fn gather_rows(
    images: &[u8],
    indices: &[u32],
    out: &mut [f32],
    count: usize,
    row_len: usize,
    scale: f32,
    offset: f32,
) {
    for (i, &index) in indices[..count].iter().enumerate() {
        let row = &images[index as usize * row_len..][..row_len];
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
