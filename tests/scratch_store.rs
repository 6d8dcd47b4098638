mod common;
use std::time::Instant;

const SRC: &str = r#"
@group(0) @binding(0) var<storage, read_write> s: array<f32>;
@group(0) @binding(1) var<storage, read_write> v: array<vec4<f32>>;
@group(0) @binding(2) var t: texture_storage_2d<rgba32float, write>;
@group(0) @binding(3) var tin: texture_storage_2d<rgba32float, read>;
@group(0) @binding(4) var<storage, read> sin: array<f32>;
@group(0) @binding(5) var<storage, read> vin: array<vec4<f32>>;

fn val(i: u32) -> vec4<f32> { return vec4(f32(i), f32(i) * 2.0, 1.0, 3.0); }

@compute @workgroup_size(64) fn scalar(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x; let x = val(i);
  s[4u*i] = x.x; s[4u*i+1u] = x.y; s[4u*i+2u] = x.z; s[4u*i+3u] = x.w;
}
@compute @workgroup_size(64) fn vector(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x; v[i] = val(i);
}
@compute @workgroup_size(64) fn tex(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x; textureStore(t, vec2(i % 2048u, i / 2048u), val(i));
}
@compute @workgroup_size(64) fn load_scalar(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x; let x = vec4(sin[4u*i], sin[4u*i+1u], sin[4u*i+2u], sin[4u*i+3u]);
  v[i] = x;
}
@compute @workgroup_size(64) fn load_vector(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x; v[i] = vin[i];
}
@compute @workgroup_size(64) fn load_tex(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x; v[i] = textureLoad(tin, vec2(i % 2048u, i / 2048u));
}
"#;

#[test]
#[ignore]
fn stores() {
    for gpu in common::gpus().iter().take(1) {
        let d = &gpu.device;
        let quads: u32 = 2048 * 128; // 1 Mi floats
        let desc = wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(SRC.into()),
        };
        let module = if std::env::var("UNCHECKED").is_ok() {
            unsafe { d.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        } else {
            d.create_shader_module(desc)
        };
        let buf = |size: u64| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let s = buf(quads as u64 * 16);
        let v = buf(quads as u64 * 16);
        let sin = buf(quads as u64 * 16);
        let vin = buf(quads as u64 * 16);
        let tex = |usage| {
            d.create_texture(&wgpu::TextureDescriptor {
                label: None,
                size: wgpu::Extent3d { width: 2048, height: 128, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage,
                view_formats: &[],
            })
        };
        let t = tex(wgpu::TextureUsages::STORAGE_BINDING);
        let tin = tex(wgpu::TextureUsages::STORAGE_BINDING);
        let tv = t.create_view(&Default::default());
        let tinv = tin.create_view(&Default::default());
        for entry in ["scalar", "vector", "tex", "load_scalar", "load_vector", "load_tex"] {
            let p = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = p.get_bind_group_layout(0);
            let all: Vec<(u32, wgpu::BindingResource)> = vec![
                (0, s.as_entire_binding()),
                (1, v.as_entire_binding()),
                (2, wgpu::BindingResource::TextureView(&tv)),
                (3, wgpu::BindingResource::TextureView(&tinv)),
                (4, sin.as_entire_binding()),
                (5, vin.as_entire_binding()),
            ];
            let used: &[u32] = match entry {
                "scalar" => &[0],
                "vector" => &[1],
                "tex" => &[2],
                "load_scalar" => &[1, 4],
                "load_vector" => &[1, 5],
                _ => &[1, 3],
            };
            let entries: Vec<wgpu::BindGroupEntry> = all
                .into_iter()
                .filter(|(b, _)| used.contains(b))
                .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
                .collect();
            let bg = d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &entries,
            });
            let run = |n: usize| {
                let mut e = d.create_command_encoder(&Default::default());
                {
                    let mut pass = e.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&p);
                    pass.set_bind_group(0, &bg, &[]);
                    for _ in 0..n {
                        pass.dispatch_workgroups(quads / 64, 1, 1);
                    }
                }
                gpu.queue.submit([e.finish()]);
                gpu.wait();
            };
            run(1);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t0 = Instant::now();
                run(10);
                best = best.min(t0.elapsed().as_secs_f64() * 100.0);
            }
            println!(
                "{entry:12} 1Mi floats: {best:.3} ms  {:.2} GB/s",
                (quads as f64 * 16.0) / best / 1e6
            );
        }
    }
}
