// Elementwise nonlinearities, in place: the forward pass rewrites x, the backward pass
// rewrites the upstream gradient dy using the forward output y. ACT, ALPHA and activate()
// come from activate.wgsl, which src/shaders.rs puts before this file.

struct Params {
    len: u32,
}

// Forward: x = act(x).
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

// Backward: dy *= act'(.), read off y (its own binding list, separate from the forward's).
@group(0) @binding(0) var<storage, read> y: array<f32>;
@group(0) @binding(1) var<storage, read_write> dy: array<f32>;
@group(0) @binding(2) var<uniform> pb: Params;

const WG: u32 = 256u;

// act'(x) written in terms of the output o = act(x) (leaky ReLU assumes ALPHA > 0).
fn derivative(o: f32) -> f32 {
    switch ACT {
        case 1u: {
            return select(0.0, 1.0, o > 0.0);
        }
        case 2u: {
            return select(ALPHA, 1.0, o > 0.0);
        }
        case 3u: {
            return 1.0 - o * o;
        }
        case 4u: {
            return o * (1.0 - o);
        }
        default: {
            return 1.0;
        }
    }
}

@compute @workgroup_size(WG)
fn activation_forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i < p.len {
        x[i] = activate(x[i]);
    }
}

@compute @workgroup_size(WG)
fn activation_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WG;
    if i < pb.len {
        dy[i] *= derivative(y[i]);
    }
}
