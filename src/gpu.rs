//! GPU context: adapter choice, device, buffers, pipelines, and the recorded work of a step.
//!
//! Everything numeric runs in `shaders/*.wgsl`; this module only moves bytes and records
//! dispatches. The device is created with WebGPU's default limits (the downlevel ones on an
//! adapter below them); features beyond them (subgroups, timestamps) are requested only when
//! the adapter has them, and the kernels that use them have portable fallbacks: [`KernelCaps`]
//! says which variants an adapter can run, [`Variants`] which ones run (see [`crate::tune`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, bail};

/// Which graphics API to reach the GPU through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Honour WGPU_BACKEND when set, else every native backend.
    Auto,
    Vulkan,
    Gl,
    Metal,
    Dx12,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Gl => wgpu::Backends::GL,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
        }
    }
}

/// How to pick the adapter and which kernel variants may be used on it.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    pub backend: BackendChoice,
    /// Case-insensitive substring of the adapter name; falls back to WGPU_ADAPTER_NAME.
    pub adapter: Option<String>,
    /// Use only the portable kernel variants (no subgroups), even where the adapter has more.
    pub portable_kernels: bool,
    /// Let kernels read their operands through texture mirrors where they fit (the default);
    /// false (GAN_GPU_TEXTURE_MIRRORS=off) reads every operand from its storage buffer, to
    /// measure what the mirrors are worth on an adapter.
    pub texture_mirrors: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backend: BackendChoice::Auto,
            adapter: None,
            portable_kernels: std::env::var("GAN_GPU_KERNELS").is_ok_and(|v| v == "portable"),
            texture_mirrors: std::env::var("GAN_GPU_TEXTURE_MIRRORS").map_or(true, |v| v != "off"),
        }
    }
}

/// What the kernels may rely on, decided once per device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelCaps {
    /// Subgroup size when the device has subgroup operations with one fixed size.
    pub subgroup_size: Option<u32>,
    pub timestamps: bool,
    /// Kernels read operands that fit a texture through its mirror ([`GpuOptions`]).
    pub texture_mirrors: bool,
    /// The adapter is a CPU (lavapipe, llvmpipe), where workgroup memory is ordinary memory
    /// reached by scalarised loads and barriers cost coroutine switches.
    pub cpu: bool,
}

/// The implementations of a kernel family that has more than one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Shares loaded operands across an 8-lane subgroup (needs [`KernelCaps::subgroup_size`]).
    Subgroup,
    /// Needs no optional feature: runs on every adapter.
    Portable,
    /// One-channel convs: conv.wgsl's rows kernels, which slide a row of an image along the
    /// filter's taps, where the shape allows (portable, so on every adapter).
    Rows,
    /// One-channel convs: the GEMM tiles of the conv family's variant, like every other conv.
    Tiles,
    /// matmul and conv: tiles staged in workgroup memory, for discrete GPUs (portable, so on
    /// every adapter).
    Tiled,
    /// Weight and bias gradients cut their long sums (over a batch's pixels) into as few slices
    /// as keep a CPU adapter's cores busy: each slice's partial sum costs a pass of stores.
    FewSlices,
    /// ... into as many as give a discrete GPU's thousands of lanes one short sum each.
    ManySlices,
    /// Kernels read operands that fit a texture through its mirror (4 floats a load, and
    /// lavapipe's fast path), refreshed by a copy after each write.
    Textures,
    /// Kernels read every operand from its storage buffer, the matmul and conv kernels 4 floats
    /// at a time through quad views (see [`Gpu::quad_views`]): no copies, which on an H200 cost
    /// more than the mirrors saved (the tuner's mlp and dcgan steps: 25.2 ms with mirrors,
    /// 14.0 through quad views).
    Buffers,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Subgroup => "subgroup",
            Variant::Portable => "portable",
            Variant::Rows => "rows",
            Variant::Tiles => "tiles",
            Variant::Tiled => "tiled",
            Variant::FewSlices => "few-slices",
            Variant::ManySlices => "many-slices",
            Variant::Textures => "textures",
            Variant::Buffers => "buffers",
        }
    }

    /// How kernels can read their operands: through texture mirrors (the default) or not.
    pub const READS: &[Variant] = &[Variant::Textures, Variant::Buffers];

    /// The reads to choose among by measurement: buffers alone where mirrors are switched off
    /// (GpuOptions::texture_mirrors); textures alone on a CPU adapter, where they are the fast
    /// path (lavapipe: 0.25 against 20-40 GFLOP/s) and a training step to time both on takes
    /// seconds; else both.
    pub fn reads_candidates(caps: &KernelCaps) -> &'static [Variant] {
        match (caps.texture_mirrors, caps.cpu) {
            (false, _) => &Variant::READS[1..],
            (true, true) => &Variant::READS[..1],
            (true, false) => Variant::READS,
        }
    }

    /// The reads in a cached choice from before they were chosen (serde's default).
    fn textures() -> Variant {
        Variant::Textures
    }

    /// The ways a one-channel conv can run, on every adapter, the default first.
    pub const ONE_CHANNEL: &[Variant] = &[Variant::Rows, Variant::Tiles];

    /// The ways to slice weight and bias gradients, on every adapter, the default first.
    pub const SLICES: &[Variant] = &[Variant::FewSlices, Variant::ManySlices];

    /// The slicings to choose among by measurement: both, but few on a CPU adapter. At the
    /// tuner's batch of 16 lavapipe ran them within noise of each other (58-69 against 63-75
    /// ms, three runs, and one chose many), while at the presets' own batches more slices
    /// made `dcgan-avgpool`'s layers 1.5-3x slower there.
    pub fn slices_candidates(caps: &KernelCaps) -> &'static [Variant] {
        if caps.cpu { &Variant::SLICES[..1] } else { Variant::SLICES }
    }

    /// The slices a cached choice from before the slices family had (serde's default).
    fn few_slices() -> Variant {
        Variant::FewSlices
    }

    /// The conv weight gradients' variant in a cached choice from before they had their own
    /// (serde's default): one every adapter runs.
    fn portable() -> Variant {
        Variant::Portable
    }

    /// The matmul and conv variants an adapter with these capabilities can run, the
    /// feature-based default first: the workgroup-memory tiles run everywhere.
    pub fn runnable(caps: &KernelCaps) -> &'static [Variant] {
        if caps.subgroup_size.is_some() {
            &[Variant::Subgroup, Variant::Portable, Variant::Tiled]
        } else {
            &[Variant::Portable, Variant::Tiled]
        }
    }

    /// The matmul and conv variants to choose among by measurement: every runnable one but,
    /// on a CPU adapter, the workgroup-memory tiles, which lavapipe ran 10x slower than the
    /// others at every preset matmul shape (0.8 against 7-9 GFLOP/s) and whose pipelines took
    /// it 6 s each to compile (tests run them there all the same).
    pub fn candidates(caps: &KernelCaps) -> &'static [Variant] {
        let runnable = Variant::runnable(caps);
        if caps.cpu { &runnable[..runnable.len() - 1] } else { runnable }
    }
}

/// Which variant each kernel family with more than one runs on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Variants {
    pub matmul: Variant,
    /// conv2d and transposed conv: the forward and input-gradient passes (the gathers).
    pub conv: Variant,
    /// ... and their weight gradients, which want other tiles: on an H200 the tiled weight
    /// gradient ran 2-5x faster than the portable one at dcgan's shapes, the tiled gathers
    /// 1.8-2.3x slower.
    #[serde(default = "Variant::portable")]
    pub conv_weight_grad: Variant,
    /// The passes of convs with a one-channel side that the rows kernels can take (stride 1
    /// along w, filters at most 8 wide; see src/kernels/conv.rs): Rows or Tiles.
    pub one_channel_conv: Variant,
    /// How conv weight gradients and bias gradients slice their sums: FewSlices or ManySlices.
    #[serde(default = "Variant::few_slices")]
    pub slices: Variant,
    /// How kernels read their operands: Textures or Buffers.
    #[serde(default = "Variant::textures")]
    pub reads: Variant,
}

impl Variants {
    /// matmul and conv on `variant` (Subgroup or Portable), one-channel convs as rows, few
    /// slices.
    pub fn all(variant: Variant) -> Variants {
        Variants {
            matmul: variant,
            conv: variant,
            conv_weight_grad: variant,
            one_channel_conv: Variant::Rows,
            slices: Variant::FewSlices,
            reads: Variant::Textures,
        }
    }

    /// The choice without measuring: the subgroup kernels wherever the adapter has them, and
    /// texture mirrors where they are not switched off.
    pub fn by_features(caps: &KernelCaps) -> Variants {
        let reads = Variant::reads_candidates(caps)[0];
        Variants { reads, ..Variants::all(Variant::candidates(caps)[0]) }
    }

    /// "matmul: subgroup, conv: subgroup, conv dw: subgroup, one-channel conv: rows, slices:
    /// few-slices, reads: textures".
    pub fn describe(&self) -> String {
        format!(
            "matmul: {}, conv: {}, conv dw: {}, one-channel conv: {}, slices: {}, reads: {}",
            self.matmul.name(),
            self.conv.name(),
            self.conv_weight_grad.name(),
            self.one_channel_conv.name(),
            self.slices.name(),
            self.reads.name()
        )
    }
}

/// One adapter as `gan-gpu devices` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    pub features: Vec<String>,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroups_per_dimension: u32,
    /// The variants each kernel family chooses among here by measurement (see
    /// [`crate::tune`]), as "family: a+b".
    pub kernel_variants: Vec<String>,
    #[serde(skip)]
    pub info: wgpu::AdapterInfo,
    #[serde(skip)]
    pub caps: KernelCaps,
}

/// Features that gan-gpu can use when the adapter has them.
const USEFUL_FEATURES: [(wgpu::Features, &str); 3] = [
    (wgpu::Features::SUBGROUP, "subgroup"),
    (wgpu::Features::TIMESTAMP_QUERY, "timestamp_query"),
    (wgpu::Features::SHADER_F16, "shader_f16"),
];

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn caps_for(adapter: &wgpu::Adapter, opts: &GpuOptions) -> KernelCaps {
    let info = adapter.get_info();
    let features = adapter.features();
    // The subgroup kernels broadcast across a subgroup of a known size; adapters whose size
    // varies from dispatch to dispatch get the portable kernels.
    let subgroup_size = (!opts.portable_kernels
        && features.contains(wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == info.subgroup_max_size
        && crate::kernels::matmul::SUBGROUP_SIZES.contains(&info.subgroup_min_size))
    .then_some(info.subgroup_min_size);
    KernelCaps {
        subgroup_size,
        timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        texture_mirrors: opts.texture_mirrors,
        cpu: info.device_type == wgpu::DeviceType::Cpu,
    }
}

fn report(adapter: &wgpu::Adapter, opts: &GpuOptions) -> AdapterReport {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    let caps = caps_for(adapter, opts);
    AdapterReport {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend).to_lowercase(),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        subgroup_min_size: info.subgroup_min_size,
        subgroup_max_size: info.subgroup_max_size,
        features: USEFUL_FEATURES
            .iter()
            .filter(|(f, _)| features.contains(*f))
            .map(|(_, name)| name.to_string())
            .collect(),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        kernel_variants: (crate::tune::Family::ALL.iter())
            .map(|f| {
                let names: Vec<&str> = f.candidates(&caps).iter().map(|v| v.name()).collect();
                format!("{}: {}", f.name(), names.join("+"))
            })
            .collect(),
        info,
        caps,
    }
}

/// Every adapter the chosen backends offer, best first.
pub fn list_adapters(opts: &GpuOptions) -> Vec<AdapterReport> {
    ranked_adapters(opts).iter().map(|a| report(a, opts)).collect()
}

fn ranked_adapters(opts: &GpuOptions) -> Vec<wgpu::Adapter> {
    let backends = opts.backend.backends();
    let mut adapters = pollster::block_on(instance(backends).enumerate_adapters(backends));
    let rank = |a: &wgpu::Adapter| {
        let info = a.get_info();
        let kind = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Cpu => 3,
            wgpu::DeviceType::Other => 4,
        };
        // GL is the API of last resort: no subgroups, slow pipeline compiles.
        (kind, info.backend == wgpu::Backend::Gl)
    };
    adapters.sort_by_key(rank);
    adapters
}

const NO_ADAPTER_HELP: &str = "install a GPU driver with Vulkan, Metal, DX12 or OpenGL support, \
or the CPU adapter: `apt-get install mesa-vulkan-drivers` (Debian/Ubuntu); \
`gan-gpu devices` lists what is found";

/// A device and queue with the pipelines compiled for it.
pub struct Gpu {
    pub info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: KernelCaps,
    pub limits: wgpu::Limits,
    /// Set at open from the features; [`crate::tune`] replaces it with a measured choice.
    variants: Mutex<Variants>,
    pipelines: Mutex<HashMap<String, Pipeline>>,
    /// [`written_bindings`] per shader and entry point, shared by their override sets.
    written: Mutex<HashMap<String, Arc<[u32]>>>,
    compiled: Mutex<Vec<CompiledPipeline>>,
}

/// A pipeline that [`Gpu::pipeline`] compiled: the WGSL module, entry point and override
/// constants, so that tests can put exactly what the program builds through other backends.
#[derive(Clone, Debug)]
pub struct CompiledPipeline {
    pub shader: &'static str,
    pub source: &'static str,
    pub entry: String,
    pub constants: Vec<(String, f64)>,
}

impl Gpu {
    /// Picks an adapter as `opts` says and opens a device on it.
    pub fn new(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        Self::open(opts, |adapter| {
            // Every kernel also lives within downlevel WebGPU's limits, so an adapter below
            // the defaults (a WebGL2-class GPU) still trains, with smaller batches.
            let default = wgpu::Limits::default();
            if default.check_limits(&adapter.limits()) {
                default
            } else {
                wgpu::Limits::downlevel_defaults()
            }
        })
    }

    /// Like [`Gpu::new`] with explicit limits (tests use WebGPU's defaults, the downlevel ones
    /// and smaller binding sizes).
    pub fn with_limits(opts: &GpuOptions, limits: wgpu::Limits) -> Result<Arc<Gpu>> {
        Self::open(opts, |_| limits.clone())
    }

    fn open(
        opts: &GpuOptions,
        limits_for: impl Fn(&wgpu::Adapter) -> wgpu::Limits,
    ) -> Result<Arc<Gpu>> {
        let wanted = opts
            .adapter
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .map(|s| s.to_lowercase());
        let adapters = ranked_adapters(opts);
        if adapters.is_empty() {
            bail!("no GPU adapter found for backend {:?}: {NO_ADAPTER_HELP}", opts.backend);
        }
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = match &wanted {
            Some(w) => adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(w))
                .with_context(|| {
                    format!("no adapter name contains {w:?}; found: {}", names.join(", "))
                })?,
            None => adapters.into_iter().next().unwrap(),
        };
        let caps = caps_for(&adapter, opts);
        let mut features = wgpu::Features::empty();
        if caps.subgroup_size.is_some() {
            features |= wgpu::Features::SUBGROUP;
        }
        if caps.timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // An adapter below the limits asked for is refused here rather than failing at its
        // first pipeline.
        let limits = limits_for(&adapter);
        let mut short = Vec::new();
        limits.check_limits_with_fail_fn(&adapter.limits(), false, |name, wanted, offered| {
            short.push(format!("{name} {offered} (needs {wanted})"))
        });
        if !short.is_empty() {
            bail!(
                "adapter {} offers less than gan-gpu's kernels need: {}; choose another with \
                 --adapter or --backend (`gan-gpu devices` lists them)",
                adapter.get_info().name,
                short.join(", ")
            );
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gan-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .with_context(|| format!("could not open a device on {}", adapter.get_info().name))?;
        Ok(Arc::new(Gpu {
            info: adapter.get_info(),
            device,
            queue,
            caps,
            limits,
            variants: Mutex::new(Variants::by_features(&caps)),
            pipelines: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            compiled: Mutex::new(Vec::new()),
        }))
    }

    /// "name (backend)", for logs and test output.
    pub fn describe(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }

    /// The kernel variants that ops recorded from now on use.
    pub fn variants(&self) -> Variants {
        *self.variants.lock().unwrap()
    }

    /// Makes ops recorded from now on use `variants` (ops already recorded keep theirs).
    pub fn set_variants(&self, variants: Variants) {
        let runnable = Variant::runnable(&self.caps).contains(&variants.matmul)
            && Variant::runnable(&self.caps).contains(&variants.conv)
            && Variant::runnable(&self.caps).contains(&variants.conv_weight_grad)
            && Variant::ONE_CHANNEL.contains(&variants.one_channel_conv)
            && Variant::SLICES.contains(&variants.slices)
            && Variant::READS.contains(&variants.reads);
        assert!(runnable, "{variants:?} on {}", self.describe());
        *self.variants.lock().unwrap() = variants;
    }

    /// A compute pipeline for `entry` in `shader`, compiled once per override set.
    pub fn pipeline(&self, shader: &Shader, entry: &str, constants: &[(&str, f64)]) -> Pipeline {
        let key = format!("{}:{entry}:{constants:?}", shader.name);
        let mut cache = self.pipelines.lock().unwrap();
        if let Some(p) = cache.get(&key) {
            return p.clone();
        }
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader.name),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        });
        let constants: Vec<(&str, f64)> = constants.to_vec();
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                ..Default::default()
            },
            cache: None,
        });
        let writes = (self.written.lock().unwrap())
            .entry(format!("{}:{entry}", shader.name))
            .or_insert_with(|| written_bindings(shader, entry).into())
            .clone();
        let pipeline = Pipeline { pipeline, writes };
        cache.insert(key, pipeline.clone());
        self.compiled.lock().unwrap().push(CompiledPipeline {
            shader: shader.name,
            source: shader.source,
            entry: entry.to_string(),
            constants: constants.iter().map(|&(name, value)| (name.to_string(), value)).collect(),
        });
        pipeline
    }

    /// Every pipeline compiled so far, in the order [`Gpu::pipeline`] first built them.
    pub fn compiled_pipelines(&self) -> Vec<CompiledPipeline> {
        self.compiled.lock().unwrap().clone()
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(&self, len: usize) -> Tensor {
        self.tensor_bytes(len, 4, None)
    }

    /// A tensor holding `data`.
    pub fn upload(&self, data: &[f32]) -> Tensor {
        self.tensor_bytes(data.len(), 4, Some(bytemuck::cast_slice(data)))
    }

    /// A tensor of u32 words (indices, packed bytes).
    pub fn upload_u32(&self, data: &[u32]) -> Tensor {
        self.tensor_bytes(data.len(), 4, Some(bytemuck::cast_slice(data)))
    }

    fn tensor_bytes(&self, len: usize, elem: usize, data: Option<&[u8]>) -> Tensor {
        // Bindings cannot be empty, and whole vec4s let elementwise kernels (optim.wgsl) read
        // and write 4 floats at once.
        let size = ((len * elem).max(16) as u64).next_multiple_of(16);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: data.is_some(),
        });
        if let Some(data) = data {
            buffer.get_mapped_range_mut(..).unwrap().slice(..data.len()).copy_from_slice(data);
            buffer.unmap();
        }
        Tensor { buffer, len, mirror: Default::default() }
    }

    /// Overwrites a tensor's contents; the write lands before the next submission runs.
    pub fn write(&self, tensor: &Tensor, data: &[f32]) {
        assert!(data.len() <= tensor.len, "write of {} into {}", data.len(), tensor.len);
        self.queue.write_buffer(&tensor.buffer, 0, bytemuck::cast_slice(data));
    }

    /// A uniform buffer holding `value` (kernel parameters, fixed when the dispatch is built).
    pub fn uniform<T: bytemuck::Pod>(&self, value: &T) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (size_of::<T>() as u64).next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: true,
        });
        buffer
            .get_mapped_range_mut(..)
            .unwrap()
            .slice(..size_of::<T>())
            .copy_from_slice(bytemuck::bytes_of(value));
        buffer.unmap();
        buffer
    }

    /// The largest buffer a kernel can bind whole: the smaller of the binding and buffer limits.
    pub fn largest_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// Whether a texture can mirror `tensor` within the device's limits; kernels read larger
    /// tensors from the buffer.
    pub fn quad_texture_fits(&self, tensor: &Tensor) -> bool {
        if !self.caps.texture_mirrors || self.variants().reads == Variant::Buffers {
            return false;
        }
        let texels = tensor.len.div_ceil(4);
        let largest = self.limits.max_texture_dimension_2d as usize;
        texels.min(QUAD_TEXTURE_WIDTH) <= largest && texels.div_ceil(QUAD_TEXTURE_WIDTH) <= largest
    }

    /// Whether the kernels of matmul.wgsl, conv.wgsl and splits.wgsl read 4 floats at a time
    /// from views of the operands' own buffers as array<vec4<f32>> (their modules rewritten by
    /// [`Shader::with_quad_views`]) rather than from texture mirrors: on the Buffers reads,
    /// where a kernel may bind the up to 8 storage buffers that takes (WebGPU's default limit;
    /// downlevel adapters have 4, and there those kernels read floats one at a time).
    pub fn quad_views(&self) -> bool {
        self.variants().reads == Variant::Buffers
            && self.limits.max_storage_buffers_per_shader_stage >= 8
    }

    /// Whether a kernel of matmul.wgsl, conv.wgsl or splits.wgsl can read `tensor` 4 floats at
    /// a time: through a quad view, or a texture mirror where one fits.
    pub fn gemm_quads_fit(&self, tensor: &Tensor) -> bool {
        self.quad_views() || self.quad_texture_fits(tensor)
    }

    /// What such a kernel binds to read `tensor` 4 floats at a time (when `read`): its quad
    /// view, or [`Gpu::quad_texture`].
    pub fn gemm_quads(&self, tensor: &Tensor, read: bool) -> QuadTexture {
        if self.quad_views() {
            return QuadTexture { source: tensor.buffer.clone(), texture: None, texels: 0 };
        }
        self.quad_texture(tensor, read)
    }

    /// `shader` (matmul.wgsl, conv.wgsl or splits.wgsl) as this device's kernels read it: with
    /// quad views where [`Gpu::quad_views`].
    pub fn gemm_module(&self, shader: Shader) -> Shader {
        if self.quad_views() { shader.with_quad_views() } else { shader }
    }

    /// The texture mirroring `tensor` (see [`QuadTexture`]; a partial last quad is padded with
    /// the buffer's spare floats), one per tensor however many kernels read it; or when `read`
    /// is false a 1-texel stand-in for a binding the kernel will not read. Dispatches that bind
    /// its view must list it in [`Dispatch::reading`].
    pub fn quad_texture(&self, tensor: &Tensor, read: bool) -> QuadTexture {
        if !read {
            return self.new_quad_texture(tensor, 0);
        }
        assert!(self.quad_texture_fits(tensor), "a texture of {} floats", tensor.len);
        tensor.mirror.get_or_init(|| self.new_quad_texture(tensor, tensor.len.div_ceil(4))).clone()
    }

    fn new_quad_texture(&self, tensor: &Tensor, texels: usize) -> QuadTexture {
        let height = texels.div_ceil(QUAD_TEXTURE_WIDTH).max(1);
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("quad texture"),
            size: wgpu::Extent3d {
                width: texels.clamp(1, QUAD_TEXTURE_WIDTH) as u32,
                height: height as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        QuadTexture { source: tensor.buffer.clone(), texture: Some((texture, view)), texels }
    }

    /// A dispatch of `pipeline` with `bindings` at binding 0, 1, 2, ... of group 0.
    pub fn dispatch(
        &self,
        label: &'static str,
        pipeline: &Pipeline,
        bindings: &[wgpu::BindingResource],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let writes = (pipeline.writes.iter())
            .filter_map(|&i| match &bindings[i as usize] {
                wgpu::BindingResource::Buffer(b) => Some(b.buffer.clone()),
                _ => None,
            })
            .collect();
        Dispatch {
            label,
            pipeline: pipeline.pipeline.clone(),
            bind_group,
            workgroups,
            reads: Vec::new(),
            writes,
        }
    }

    /// Workgroup counts covering `threads` invocations of `workgroup_size`, folded into y
    /// when x would pass the per-dimension limit. Kernels rebuild the flat index with
    /// [`flat_id`](../../shaders) = gid.x + gid.y * num_workgroups.x * workgroup_size.
    pub fn grid(&self, threads: usize, workgroup_size: u32) -> [u32; 3] {
        let groups = (threads as u64).div_ceil(workgroup_size as u64).max(1);
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            [groups.div_ceil(y) as u32, y as u32, 1]
        }
    }

    /// Records `ops` into one command buffer, submits it and waits for it.
    pub fn run(&self, ops: &[Op]) {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        record(&mut encoder, ops);
        self.queue.submit([encoder.finish()]);
        self.wait();
    }

    pub fn wait(&self) {
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("GPU device lost");
    }

    /// Reads a tensor back (blocking; tests and checkpoints only, never inside a step).
    pub fn read(&self, tensor: &Tensor) -> Vec<f32> {
        bytemuck::pod_collect_to_vec(&self.read_bytes(&tensor.buffer, tensor.len * 4))
    }

    pub fn read_u32(&self, tensor: &Tensor) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&self.read_bytes(&tensor.buffer, tensor.len * 4))
    }

    fn read_bytes(&self, buffer: &wgpu::Buffer, len: usize) -> Vec<u8> {
        let staging = Staging::new(self, buffer.size());
        let mut encoder = self.device.create_command_encoder(&Default::default());
        staging.copy_from(&mut encoder, buffer);
        self.queue.submit([encoder.finish()]);
        staging.map();
        staging.take(self)[..len].to_vec()
    }
}

/// A flat f32 (or u32) array in a storage buffer.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub len: usize,
    /// The texture that mirrors it for kernels' 4-float reads, made on first use and shared by
    /// the tensor's clones, so that a mirror already refreshed serves every later reader.
    mirror: Arc<OnceLock<QuadTexture>>,
}

impl Tensor {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }
}

/// Width in texels of the textures that mirror tensors for the kernels' 4-float reads: elements
/// 4i..4i+3 are texel (i % QUAD_TEXTURE_WIDTH, i / QUAD_TEXTURE_WIDTH). The shaders' `texel`
/// hard-codes the same width. It is downlevel WebGPU's largest texture width; at the default
/// 8192 rows a texture holds 64 Mi floats, the default largest buffer.
pub const QUAD_TEXTURE_WIDTH: usize = 2048;

/// A tensor's floats as rgba32float texels, refreshed from the tensor by a copy recorded before
/// a dispatch that reads it when the tensor was written since (see [`record`]). lavapipe
/// scalarises every storage-buffer load (a loop over the 8 SIMD lanes with a bounds check each)
/// but fetches texels vectorised, so kernels that read their operands through textures run
/// several times faster there; the copy is a memcpy. Or, for the kernels of
/// [`Gpu::quad_views`], the tensor's own buffer, which they read as array<vec4<f32>>: no copy.
#[derive(Clone, Debug)]
pub struct QuadTexture {
    source: wgpu::Buffer,
    /// None for a quad view of `source`.
    texture: Option<(wgpu::Texture, wgpu::TextureView)>,
    /// Texels to refresh (0 for a stand-in or a view).
    texels: usize,
}

impl QuadTexture {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        match &self.texture {
            Some((_, view)) => wgpu::BindingResource::TextureView(view),
            None => self.source.as_entire_binding(),
        }
    }

    /// Records the copy of the tensor's current contents into the texture.
    fn record_refresh(&self, encoder: &mut wgpu::CommandEncoder) {
        let width = QUAD_TEXTURE_WIDTH;
        let (rows, tail) = (self.texels / width, self.texels % width);
        let (texture, _) = self.texture.as_ref().expect("a texture mirror");
        let copy =
            |first_row: usize, width: usize, height: usize, encoder: &mut wgpu::CommandEncoder| {
                encoder.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: &self.source,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: (first_row * QUAD_TEXTURE_WIDTH * 16) as u64,
                            bytes_per_row: Some((QUAD_TEXTURE_WIDTH * 16) as u32),
                            rows_per_image: None,
                        },
                    },
                    wgpu::TexelCopyTextureInfo {
                        texture,
                        mip_level: 0,
                        origin: wgpu::Origin3d { x: 0, y: first_row as u32, z: 0 },
                        aspect: wgpu::TextureAspect::All,
                    },
                    wgpu::Extent3d {
                        width: width as u32,
                        height: height as u32,
                        depth_or_array_layers: 1,
                    },
                );
            };
        if rows > 0 {
            copy(0, width, rows, encoder);
        }
        if tail > 0 {
            copy(rows, tail, 1, encoder);
        }
    }
}

/// A compiled entry point and the bindings it may write (which [`record`] needs to know which
/// texture mirrors a dispatch leaves stale).
#[derive(Clone, Debug)]
pub struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    writes: Arc<[u32]>,
}

/// Numbers of the group-0 bindings that `entry` of `shader` writes, as naga's analysis finds
/// them (a module's entry points may put different variables at the same binding).
fn written_bindings(shader: &Shader, entry: &str) -> Vec<u32> {
    use naga::valid::{Capabilities, GlobalUse, ValidationFlags, Validator};
    let module = naga::front::wgsl::parse_str(shader.source)
        .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", shader.name));
    let index = module.entry_points.iter().position(|e| e.name == entry);
    let uses = info.get_entry_point(index.expect("an entry point of the module"));
    (module.global_variables.iter())
        .filter(|&(handle, _)| uses[handle].contains(GlobalUse::WRITE))
        .filter_map(|(_, var)| var.binding.as_ref().map(|b| b.binding))
        .collect()
}

/// A WGSL module compiled into the binary.
#[derive(Clone, Copy)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

impl Shader {
    /// The part of this module before its subgroup section (the line that starts with
    /// "// ---- Subgroup variant"), for devices without subgroups: naga rejects a module that
    /// uses subgroup operations anywhere when the device lacks them.
    pub fn portable_part(&self, name: &'static str) -> Shader {
        let end = self.source.find("// ---- Subgroup variant").unwrap_or_else(|| {
            panic!("{} has no subgroup section", self.name);
        });
        Shader { name, source: &self.source[..end] }
    }

    /// This module with each rgba32float texture it reads declared as a storage buffer of
    /// vec4s instead, so that it binds the tensor's buffer itself (see [`Gpu::quad_views`]):
    /// every read of such a texture `t` must be the `textureLoad(t, texel(q))` of a helper
    /// function, which becomes `t[q]`. Rewritten once per module and kept.
    pub fn with_quad_views(&self) -> Shader {
        static REWRITTEN: Mutex<BTreeMap<&'static str, Shader>> = Mutex::new(BTreeMap::new());
        let mut rewritten = REWRITTEN.lock().unwrap();
        *rewritten.entry(self.name).or_insert_with(|| {
            let mut source = String::with_capacity(self.source.len());
            let mut names = Vec::new();
            for line in self.source.lines() {
                match line.split_once(": texture_storage_2d<rgba32float, read>;") {
                    Some((head, "")) => {
                        let (binding, name) = head.rsplit_once(" var ").expect("var NAME: texture");
                        source.push_str(&format!(
                            "{binding} var<storage, read> {name}: array<vec4<f32>>;"
                        ));
                        names.push(name.to_string());
                    }
                    _ => source.push_str(line),
                }
                source.push('\n');
            }
            for name in &names {
                source = source
                    .replace(&format!("textureLoad({name}, texel(q))"), &format!("{name}[q]"));
            }
            assert!(
                !source.contains("textureLoad("),
                "{}: a texture read outside a helper",
                self.name
            );
            let name = Box::leak(format!("{} (quad views)", self.name).into_boxed_str());
            Shader { name, source: Box::leak(source.into_boxed_str()) }
        })
    }
}

/// One compute dispatch with its bindings, built once and replayed every step.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub label: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// Textures the dispatch reads, refreshed from their tensors just before it when stale.
    reads: Vec<QuadTexture>,
    /// Buffers the dispatch may write (which leaves their mirrors stale).
    writes: Vec<wgpu::Buffer>,
}

impl Dispatch {
    /// This dispatch, with the textures it binds refreshed before it runs.
    pub fn reading(mut self, textures: &[&QuadTexture]) -> Dispatch {
        self.reads = textures.iter().filter(|t| t.texels > 0).map(|&t| t.clone()).collect();
        self
    }
}

/// While recording: the texture mirrors that hold their tensors' current values. Nothing is
/// fresh at the start of a command buffer (the host may have written any tensor before it).
#[derive(Default)]
struct FreshMirrors(Vec<QuadTexture>);

impl FreshMirrors {
    fn is_fresh(&self, texture: &QuadTexture) -> bool {
        self.0
            .iter()
            .any(|t| t.texture.as_ref().map(|m| &m.0) == texture.texture.as_ref().map(|m| &m.0))
    }

    fn any_stale(&self, d: &Dispatch) -> bool {
        d.reads.iter().any(|t| !self.is_fresh(t))
    }

    /// Records the copies that bring the textures `d` reads up to date.
    fn refresh(&mut self, d: &Dispatch, encoder: &mut wgpu::CommandEncoder) {
        for texture in &d.reads {
            if !self.is_fresh(texture) {
                texture.record_refresh(encoder);
                self.0.push(texture.clone());
            }
        }
    }

    fn written(&mut self, buffer: &wgpu::Buffer) {
        self.0.retain(|t| t.source != *buffer);
    }
}

/// A unit of recorded GPU work.
#[derive(Clone, Debug)]
pub enum Op {
    Dispatch(Dispatch),
    /// Copy `len` f32 elements between tensors (element offsets).
    Copy {
        src: Tensor,
        src_offset: usize,
        dst: Tensor,
        dst_offset: usize,
        len: usize,
    },
}

impl From<Dispatch> for Op {
    fn from(d: Dispatch) -> Op {
        Op::Dispatch(d)
    }
}

/// Records `ops` in order: consecutive dispatches share one compute pass, and a texture mirror
/// is refreshed before a dispatch reads it only when its tensor was written since its last
/// refresh in this command buffer.
pub fn record(encoder: &mut wgpu::CommandEncoder, ops: &[Op]) {
    let mut fresh = FreshMirrors::default();
    let mut i = 0;
    while i < ops.len() {
        match &ops[i] {
            Op::Copy { src, src_offset, dst, dst_offset, len } => {
                fresh.written(&dst.buffer);
                encoder.copy_buffer_to_buffer(
                    &src.buffer,
                    (*src_offset * 4) as u64,
                    &dst.buffer,
                    (*dst_offset * 4) as u64,
                    Some((*len * 4) as u64),
                );
                i += 1;
            }
            Op::Dispatch(first) => {
                // Texture refreshes are copies, which cannot sit inside a pass: a dispatch
                // that reads a stale texture starts a pass of its own.
                fresh.refresh(first, encoder);
                let pass_start = i;
                let mut pass = encoder.begin_compute_pass(&Default::default());
                while let Some(Op::Dispatch(d)) = ops.get(i) {
                    if i > pass_start && fresh.any_stale(d) {
                        break;
                    }
                    pass.set_pipeline(&d.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    let [x, y, z] = d.workgroups;
                    pass.dispatch_workgroups(x, y, z);
                    d.writes.iter().for_each(|b| fresh.written(b));
                    i += 1;
                }
            }
        }
    }
}

/// Like [`record`], but each dispatch in a compute pass of its own that writes GPU timestamps
/// into `queries` at its beginning (2k) and end (2k + 1), k counting dispatches: to see where
/// the time of a recorded step goes.
pub fn record_timed(encoder: &mut wgpu::CommandEncoder, ops: &[Op], queries: &wgpu::QuerySet) {
    let mut fresh = FreshMirrors::default();
    let mut k = 0;
    for op in ops {
        let d = match op {
            Op::Dispatch(d) => d,
            Op::Copy { dst, .. } => {
                record(encoder, std::slice::from_ref(op));
                fresh.written(&dst.buffer);
                continue;
            }
        };
        fresh.refresh(d, encoder);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(d.label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: queries,
                beginning_of_pass_write_index: Some(2 * k),
                end_of_pass_write_index: Some(2 * k + 1),
            }),
        });
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        let [x, y, z] = d.workgroups;
        pass.dispatch_workgroups(x, y, z);
        d.writes.iter().for_each(|b| fresh.written(b));
        k += 1;
    }
}

/// A mappable copy of a buffer, for reading results back without stalling the GPU.
pub struct Staging {
    buffer: wgpu::Buffer,
    ready: Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>,
}

impl Staging {
    pub fn new(gpu: &Gpu, size: u64) -> Staging {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Staging { buffer, ready: Arc::new(Mutex::new(None)) }
    }

    pub fn copy_from(&self, encoder: &mut wgpu::CommandEncoder, src: &wgpu::Buffer) {
        encoder.copy_buffer_to_buffer(src, 0, &self.buffer, 0, Some(self.buffer.size()));
    }

    /// Asks for the mapping once the submitted copy is done; poll the device to progress it.
    pub fn map(&self) {
        let ready = self.ready.clone();
        *ready.lock().unwrap() = None;
        self.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            *ready.lock().unwrap() = Some(r);
        });
    }

    /// The bytes, waiting for the GPU until the mapping has completed. Another thread's poll of
    /// the same device may be the one that runs the mapping callback, after this thread's poll
    /// returns: poll until the mapping has landed.
    pub fn take(&self, gpu: &Gpu) -> Vec<u8> {
        loop {
            gpu.wait();
            if let Some(bytes) = self.try_take() {
                return bytes;
            }
            std::thread::yield_now();
        }
    }

    /// The bytes, once the mapping has completed; None while it is pending.
    pub fn try_take(&self) -> Option<Vec<u8>> {
        let result = self.ready.lock().unwrap().take()?;
        result.expect("buffer mapping failed");
        let bytes = self.buffer.slice(..).get_mapped_range().unwrap().to_vec();
        self.buffer.unmap();
        Some(bytes)
    }
}
