// The stores of the matmul and conv kernels, put before both modules (after activate.wgsl and
// texel.wgsl): quads of their output `c`, which each module declares as array<vec4<f32>>
// (element e is c[e / 4][e % 4]), through the activation after the layer or times the
// derivative of the one before it, read from the `epilogue` and `e4` bindings they declare.

// The stores' rows are whole quads, so a store's 4 values are one vec4 of c. lavapipe stores a
// vec4 in one loop over the SIMD lanes, 4 floats at a time, where 4 scalar stores take 4 such
// loops: 0.66-0.71x the time of matmul at 128,784,128,bias,tanh and 256,6272,100, whose short
// k loops leave the stores a large share.
override VEC_C: bool = false;
// Add c's own values to what is stored (a weight gradient summed over chunks of a batch). A
// constant rather than a parameter: lavapipe runs a branch's loads with every lane masked off
// even where no lane takes it.
override ACCUMULATE: bool = false;
// With GRADIENT: the stores' rows are whole quads, so a store's 4 activation outputs are one
// texel of e4. One texel load rather than 4 scalar ones: the scalar loads made matmul 1.3x
// slower at 128,784,128.
override VEC_EPILOGUE: bool = false;

// Writes v to c's elements base + k0 .. base + k0 + 3 that lie before base + len (plus their
// own values when ACCUMULATE). base is a multiple of len and k0 of 4, so with VEC_C the quad is
// whole or wholly past the row.
fn store_quad(base: u32, k0: u32, len: u32, v: vec4<f32>) {
    if VEC_C {
        if k0 < len {
            let e = (base + k0) / 4u;
            var x = v;
            if ACCUMULATE {
                x += c[e];
            }
            c[e] = x;
        }
        return;
    }
    for (var q = 0u; q < 4u; q++) {
        if k0 + q < len {
            let e = base + k0 + q;
            var x = v[q];
            if ACCUMULATE {
                x += c[e / 4u][e % 4u];
            }
            c[e / 4u][e % 4u] = x;
        }
    }
}

// Quad q of the activation output from its mirror, or with quad views (src/gpu.rs's
// Shader::with_quad_views) from its buffer as vec4s: the only read of e4.
fn e4_quad(q: u32) -> vec4<f32> {
    return textureLoad(e4, texel(q));
}

// act(v), or with GRADIENT v times act' at the activation output's elements e..e+3 (e a
// multiple of 4 where VEC_EPILOGUE).
fn fused_quad(e: u32, v: vec4<f32>) -> vec4<f32> {
    if !GRADIENT {
        return activate_quad(v);
    }
    if VEC_EPILOGUE {
        return v * derivative_quad(e4_quad(e / 4u));
    }
    let o = vec4(epilogue[e], epilogue[e + 1u], epilogue[e + 2u], epilogue[e + 3u]);
    return v * derivative_quad(o);
}
