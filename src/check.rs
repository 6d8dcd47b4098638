//! Comparing a kernel's output with its CPU twin: the one place where tolerances live.
//! Tests and `gan-gpu bench` both call [`compare`] before they trust or time a kernel.

/// Allowed error: |got - want| <= abs + rel * max|want| for every element.
/// Relative to the largest reference value, because reductions (matmul, sums) accumulate
/// rounding in proportion to the magnitude of what they sum, not of each output.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub abs: f32,
    pub rel: f32,
}

/// Elementwise kernels: a few ulps, plus transcendental functions that differ between
/// the GPU's and the CPU's implementations.
pub const ELEMENTWISE: Tolerance = Tolerance { abs: 1e-6, rel: 2e-5 };
/// Reductions (matmul, conv, column sums, batch statistics) in f32 with another summation order.
pub const REDUCTION: Tolerance = Tolerance { abs: 1e-5, rel: 1e-4 };

/// Ok, or a message naming the worst element.
pub fn compare(name: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{name}: length {} != {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
    let limit = tol.abs + tol.rel * scale;
    let mut worst: Option<(usize, f32)> = None;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        // A poisoned (NaN) element that the kernel never wrote fails here too.
        let bad = err.is_nan() || err > limit;
        if bad && worst.is_none_or(|(_, e)| err.is_nan() || err > e) {
            worst = Some((i, err));
        }
    }
    match worst {
        None => Ok(()),
        Some((i, err)) => Err(format!(
            "{name}: element {i} is {} but the CPU twin says {} (error {err:e} > limit {limit:e})",
            got[i], want[i]
        )),
    }
}
