//! CPU twin of `kernels::bias`.

/// db[c] = sum over rows of dy[r*cols + c] (+ db[c] when `accumulate`): the bias gradient of
/// a dense layer.
pub fn bias_grad(dy: &[f32], db: &mut [f32], rows: usize, cols: usize, accumulate: bool) {
    for (c, out) in db[..cols].iter_mut().enumerate() {
        // f64 so that the judge's own rounding is negligible next to the kernel's.
        let sum: f64 = (0..rows).map(|r| dy[r * cols + c] as f64).sum();
        *out = if accumulate { (sum + *out as f64) as f32 } else { sum as f32 };
    }
}
