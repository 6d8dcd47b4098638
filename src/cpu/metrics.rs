//! CPU twin of `kernels::metrics`.

/// out[slot] = mean(losses[start..start+count]); out[slot+1] = share of logits on the right
/// side of 0 (above for real images, `positive`, below for fakes).
#[allow(clippy::too_many_arguments)]
pub fn batch_metrics(
    logits: &[f32],
    losses: &[f32],
    out: &mut [f32],
    slot: usize,
    start: usize,
    count: usize,
    positive: bool,
) {
    let range = start..start + count;
    let loss: f32 = losses[range.clone()].iter().sum();
    let correct =
        logits[range].iter().filter(|&&z| if positive { z > 0.0 } else { z < 0.0 }).count();
    out[slot] = loss / count as f32;
    out[slot + 1] = correct as f32 / count as f32;
}
