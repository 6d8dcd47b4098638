// Column sums of a row-major matrix: the gradient of a bias that was added to every row
// (the bias add itself is fused into the matmul). With `accumulate` the sums are added to
// db's values (a gradient summed over chunks of a batch).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> db: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = 256u;

// One thread per column walks down the rows: neighbouring threads read neighbouring words,
// and every element is loaded exactly once.
@compute @workgroup_size(WG)
fn bias_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let c = gid.x + gid.y * groups.x * WG;
    if c >= p.cols {
        return;
    }
    var sum = select(0.0, db[c], p.accumulate != 0u);
    for (var r = 0u; r < p.rows; r++) {
        sum += dy[r * p.cols + c];
    }
    db[c] = sum;
}
