// Batch metrics of a discriminator's logits: the mean loss and the accuracy over a range of
// the batch, reduced by one workgroup so the trainer reads back two floats instead of a batch.

struct Params {
    start: u32,
    count: u32,
    // Output slot: out[slot] = mean loss, out[slot + 1] = accuracy.
    slot: u32,
    // 1 when the range holds real images (correct means logit > 0), 0 for fakes.
    positive: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> loss_sum: array<f32, WG>;
var<workgroup> correct_sum: array<f32, WG>;

// Each thread sums a strided share of the range, then a tree reduction combines the shares.
@compute @workgroup_size(256)
fn batch_metrics(@builtin(local_invocation_index) lid: u32) {
    var loss = 0.0;
    var correct = 0.0;
    for (var i = lid; i < p.count; i += WG) {
        let z = logits[p.start + i];
        loss += losses[p.start + i];
        let right = select((z < 0.0), (z > 0.0), p.positive == 1u);
        correct += select(0.0, 1.0, right);
    }
    loss_sum[lid] = loss;
    correct_sum[lid] = correct;
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if lid < half {
            loss_sum[lid] += loss_sum[lid + half];
            correct_sum[lid] += correct_sum[lid + half];
        }
    }
    if lid == 0u {
        let n = f32(p.count);
        out[p.slot] = loss_sum[0] / n;
        out[p.slot + 1u] = correct_sum[0] / n;
    }
}
