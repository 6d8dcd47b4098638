// Addressing of the textures that mirror tensors (src/gpu.rs's QuadTexture), put before every
// module that reads them: floats 4q..4q+3 of a tensor are texel (q % 2048, q / 2048), 2048
// being QUAD_TEXTURE_WIDTH. The mirrors are read-only storage textures, which lavapipe loads in
// a fraction of a storage-buffer load's time (and in about a third of a sampled texture's).
// Kernels name their textures directly rather than passing them: naga's GLSL output rejects
// storage images as function parameters.

// The texel holding quad q.
fn texel(q: u32) -> vec2<u32> {
    return vec2(q % 2048u, q / 2048u);
}

// The texel holding element i, as its component i % 4.
fn element_texel(i: u32) -> vec2<u32> {
    return texel(i / 4u);
}
