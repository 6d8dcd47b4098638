//! Every WGSL module through every shader backend naga has, with the options wgpu uses.
//!
//! Checked: each (module, entry point, override constants) that the program really builds —
//! read back from [`Gpu::compiled_pipelines`] after building a training iteration of every
//! preset (at its batch size and at `--batch-size` 1 and 6) and running `generate`, once with
//! the fast kernels and once forced onto the portable ones — and every entry point of every
//! module in [`shaders::ALL`] with its default overrides, so that a kernel no preset uses yet
//! is checked too. Each is specialised for its entry point with naga's `process_overrides`
//! and translated to SPIR-V 1.3 and 1.6, MSL 2.0 and 3.0, HLSL SM 5.1 and 6.0, GLSL ES 3.10
//! and GLSL 4.30 (compute). `spirv-val` validates the SPIR-V (for Vulkan 1.1 and 1.3) and
//! `glslangValidator` the GLSL; MSL and HLSL have no validator here, so naga must translate
//! them without error. A backend that rejects a shader fails the test with a message naming
//! shader, entry point, overrides and backend.
//!
//! Skipped, and said so in the output, for entry points that need subgroup operations: GLSL,
//! because wgpu's GL backend never offers subgroups, and HLSL SM 5.1, because wgpu offers them
//! on DX12 only from SM 6.0 (where they are checked).
//!
//! `spirv-val` and `glslangValidator` come from spirv-tools and glslang-tools; without them the
//! test fails unless GAN_GPU_SKIP_SHADER_TOOLS=1, which leaves only the naga translations.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gan_gpu::data::Dataset;
use gan_gpu::gpu::{BackendChoice, Gpu, GpuOptions, Shader};
use gan_gpu::shaders;
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ShaderStage, StorageAccess, TypeInner};

/// One pipeline to check: a WGSL module, an entry point and override constants.
#[derive(Clone, Debug)]
struct Case {
    shader: String,
    source: Cow<'static, str>,
    entry: String,
    constants: Vec<(String, f64)>,
}

impl Case {
    fn describe(&self) -> String {
        let overrides = if self.constants.is_empty() {
            "defaults".to_string()
        } else {
            let set: Vec<String> = self.constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
            set.join(", ")
        };
        format!("shader {}, entry point {}, overrides {{{overrides}}}", self.shader, self.entry)
    }

    /// Identity for de-duplication: the same text, entry and constants is the same pipeline.
    fn key(&self) -> (String, String, String) {
        (self.source.to_string(), self.entry.clone(), format!("{:?}", self.constants))
    }
}

/// A shader backend with the version wgpu would target.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// SPIR-V at this version, validated by spirv-val for this Vulkan environment.
    Spirv {
        version: (u8, u8),
        env: &'static str,
    },
    Msl((u8, u8)),
    Hlsl(hlsl::ShaderModel),
    Glsl(glsl::Version),
}

/// Every backend, at the oldest version wgpu uses and (where the output differs) a newer one:
/// Vulkan 1.1 devices get SPIR-V 1.3 and polyfilled zero-initialisation, Vulkan 1.3 devices
/// (lavapipe) SPIR-V 1.6 and native zero-initialisation; MSL 2.0 is macOS 10.13, MSL 3.0
/// macOS 13; FXC compiles SM 5.1, DXC SM 6.0; GL ES 3.1 is the least that has compute
/// shaders, desktop GL 4.3 likewise (this machine's llvmpipe gets desktop GLSL).
const TARGETS: &[Target] = &[
    Target::Spirv { version: (1, 3), env: "vulkan1.1" },
    Target::Spirv { version: (1, 6), env: "vulkan1.3" },
    Target::Msl((2, 0)),
    Target::Msl((3, 0)),
    Target::Hlsl(hlsl::ShaderModel::V5_1),
    Target::Hlsl(hlsl::ShaderModel::V6_0),
    Target::Glsl(glsl::Version::Embedded { version: 310, is_webgl: false }),
    Target::Glsl(glsl::Version::Desktop(430)),
];

impl Target {
    fn name(&self) -> String {
        match self {
            Target::Spirv { version: (a, b), env } => format!("SPIR-V {a}.{b} ({env})"),
            Target::Msl((a, b)) => format!("MSL {a}.{b}"),
            Target::Hlsl(sm) => format!("HLSL SM {}", sm.to_str().replace('_', ".")),
            Target::Glsl(glsl::Version::Embedded { version, .. }) => {
                format!("GLSL ES {}.{}", version / 100, version % 100)
            }
            Target::Glsl(glsl::Version::Desktop(version)) => {
                format!("GLSL {}.{}", version / 100, version % 100)
            }
        }
    }

    /// Why this backend does not apply to an entry point that needs subgroup operations.
    fn subgroup_skip(&self) -> Option<&'static str> {
        match self {
            Target::Glsl(_) => Some("wgpu's GL backend never offers subgroups"),
            Target::Hlsl(hlsl::ShaderModel::V5_1) => {
                Some("wgpu offers subgroups on DX12 only with SM 6.0 (checked there)")
            }
            _ => None,
        }
    }
}

/// The external validators, and a directory for their input files.
struct Tools {
    /// Validators not installed (only with GAN_GPU_SKIP_SHADER_TOOLS=1): their checks are off.
    missing: Vec<&'static str>,
    scratch: tempfile::TempDir,
}

impl Tools {
    fn validate(&self) -> bool {
        self.missing.is_empty()
    }
}

fn tool_runs(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success())
}

fn tools() -> Tools {
    let missing: Vec<&'static str> =
        [("spirv-val", "--version"), ("glslangValidator", "--version")]
            .into_iter()
            .filter(|(program, arg)| !tool_runs(program, arg))
            .map(|(program, _)| program)
            .collect();
    let skip = std::env::var("GAN_GPU_SKIP_SHADER_TOOLS").is_ok_and(|v| v == "1");
    if !missing.is_empty() {
        assert!(
            skip,
            "{} not found: install spirv-tools and glslang-tools (`apt-get install spirv-tools \
             glslang-tools`), or set GAN_GPU_SKIP_SHADER_TOOLS=1 to check only that naga \
             translates every shader",
            missing.join(" and ")
        );
        eprintln!(
            "shader_backends: {} not found and GAN_GPU_SKIP_SHADER_TOOLS=1: translating only, \
             nothing validated",
            missing.join(" and ")
        );
    }
    Tools { missing, scratch: tempfile::tempdir().unwrap() }
}

/// What checking one case found.
#[derive(Debug, Default)]
struct Outcome {
    /// Backends that accepted it.
    passed: Vec<String>,
    /// "backend: reason" for each backend that does not apply.
    skipped: Vec<String>,
    /// One message per backend that rejected it, naming the case and the backend.
    failures: Vec<String>,
}

/// Validation as wgpu does on a device with WebGPU's defaults, plus subgroups when `subgroups`.
fn validate(module: &Module, subgroups: bool, source: &str) -> Result<ModuleInfo, String> {
    let mut caps = Capabilities::default();
    if subgroups {
        caps |= Capabilities::SUBGROUP | Capabilities::SUBGROUP_BARRIER;
    }
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .map_err(|e| e.emit_to_string(source))
}

/// The module parsed and validated as a device with subgroups would (the portable kernels
/// need none; the subgroup ones are only built where the device has them).
fn front_end(source: &str) -> Result<(Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("WGSL front end: {}", e.emit_to_string(source)))?;
    let info = validate(&module, false, source)
        .or_else(|_| validate(&module, true, source))
        .map_err(|e| format!("naga validation: {e}"))?;
    Ok((module, info))
}

/// Parses, validates and specialises `case` for its entry point; then every backend.
fn check(case: &Case, tools: &Tools) -> Outcome {
    let mut outcome = Outcome::default();
    let what = case.describe();
    let (module, info) = match front_end(&case.source) {
        Ok(parsed) => parsed,
        Err(e) => {
            outcome.failures.push(format!("{what}: {e}"));
            return outcome;
        }
    };
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in &case.constants {
        constants.insert(name.clone(), *value);
    }
    let (module, info) = match naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, &case.entry)),
        &constants,
    ) {
        Ok(specialised) => specialised,
        Err(e) => {
            outcome.failures.push(format!("{what}: override constants: {e}"));
            return outcome;
        }
    };
    let Some(ep_index) = module
        .entry_points
        .iter()
        .position(|ep| ep.name == case.entry && ep.stage == ShaderStage::Compute)
    else {
        outcome.failures.push(format!("{what}: no compute entry point {}", case.entry));
        return outcome;
    };
    // Compaction for the entry point has dropped what it does not reach, so this asks whether
    // the entry point itself needs subgroups.
    let needs_subgroups = validate(&module, false, &case.source).is_err()
        && validate(&module, true, &case.source).is_ok();
    let bindings = Bindings::of(&module, &info, ep_index);
    for target in TARGETS {
        let name = target.name();
        let label = format!("{what} {name}");
        if needs_subgroups && let Some(why) = target.subgroup_skip() {
            outcome.skipped.push(format!("{name}: {why}"));
            continue;
        }
        let result = match *target {
            Target::Spirv { version, env } => {
                spirv(&module, &info, &case.entry, version, needs_subgroups, &bindings).and_then(
                    |words| {
                        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                        let env = ["--target-env", env];
                        validate_with(tools, &label, "spv", &bytes, "spirv-val", &env)
                    },
                )
            }
            Target::Msl(version) => metal(&module, &info, &case.entry, version, &bindings),
            Target::Hlsl(model) => hlsl_source(&module, &info, &case.entry, model, &bindings),
            Target::Glsl(version) => glsl_source(&module, &info, &case.entry, version, &bindings)
                .and_then(|text| {
                    validate_with(tools, &label, "comp", text.as_bytes(), "glslangValidator", &[])
                }),
        };
        match result {
            Ok(()) => outcome.passed.push(name),
            Err(e) => outcome.failures.push(format!("{what}: {name}: {e}")),
        }
    }
    outcome
}

/// Writes `bytes` to a scratch file with extension `ext` and runs `program ARGS... FILE`; what
/// it rejects is kept under the target dir, with a name made of `label`, for a look.
fn validate_with(
    tools: &Tools,
    label: &str,
    ext: &str,
    bytes: &[u8],
    program: &str,
    args: &[&str],
) -> Result<(), String> {
    if tools.missing.contains(&program) {
        return Ok(());
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path: PathBuf =
        tools.scratch.path().join(format!("{}.{ext}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(program)
        .args(args)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    if out.status.success() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    let name: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' })
        .collect();
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shader_backends");
    let kept = std::fs::create_dir_all(&kept)
        .and_then(|()| std::fs::rename(&path, kept.join(format!("{name}.{ext}"))))
        .map(|()| kept.join(format!("{name}.{ext}")));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let text = text.replace(&path.display().to_string(), "<shader>");
    let kept = kept.map_or(String::new(), |k| format!(" (kept at {})", k.display()));
    Err(format!("{program} rejects the output{kept}: {}", text.trim()))
}

/// The resources an entry point uses, numbered as wgpu's backends number them.
struct Bindings {
    resources: Vec<Resource>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Uniform,
    Storage { writable: bool },
    Texture,
    StorageTexture { writable: bool },
    Sampler,
}

struct Resource {
    binding: naga::ResourceBinding,
    kind: Kind,
}

impl Bindings {
    fn of(module: &Module, info: &ModuleInfo, ep_index: usize) -> Bindings {
        let ep_info = info.get_entry_point(ep_index);
        let mut resources: Vec<Resource> = module
            .global_variables
            .iter()
            .filter(|(handle, _)| !ep_info[*handle].is_empty())
            .filter_map(|(_, var)| {
                let binding = var.binding?;
                let kind = match (var.space, &module.types[var.ty].inner) {
                    (AddressSpace::Uniform, _) => Kind::Uniform,
                    (AddressSpace::Storage { access }, _) => {
                        Kind::Storage { writable: access.contains(StorageAccess::STORE) }
                    }
                    (
                        _,
                        TypeInner::Image {
                            class: naga::ImageClass::Storage { access, .. }, ..
                        },
                    ) => Kind::StorageTexture { writable: access.contains(StorageAccess::STORE) },
                    (_, TypeInner::Image { .. }) => Kind::Texture,
                    (_, TypeInner::Sampler { .. }) => Kind::Sampler,
                    (space, ty) => panic!("binding of {space:?} {ty:?}: not handled by this test"),
                };
                Some(Resource { binding, kind })
            })
            .collect();
        resources.sort_by_key(|r| (r.binding.group, r.binding.binding));
        Bindings { resources }
    }

    fn has_storage_buffers(&self) -> bool {
        self.resources.iter().any(|r| matches!(r.kind, Kind::Storage { .. }))
    }
}

fn checked_policies(policy: naga::proc::BoundsCheckPolicy) -> naga::proc::BoundsCheckPolicies {
    naga::proc::BoundsCheckPolicies {
        index: policy,
        buffer: policy,
        image_load: policy,
        binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
    }
}

/// SPIR-V as wgpu's Vulkan backend writes it on a device without robust buffer access 2:
/// bindings renumbered densely within each set, the Vulkan core capabilities, plus the
/// subgroup ones only for subgroup kernels.
fn spirv(
    module: &Module,
    info: &ModuleInfo,
    entry: &str,
    version: (u8, u8),
    subgroups: bool,
    bindings: &Bindings,
) -> Result<Vec<u32>, String> {
    let mut binding_map = spv::BindingMap::default();
    let mut next = std::collections::BTreeMap::<u32, u32>::new();
    for r in &bindings.resources {
        let slot = next.entry(r.binding.group).or_default();
        let target = spv::BindingInfo {
            descriptor_set: r.binding.group,
            binding: *slot,
            binding_array_size: None,
        };
        binding_map.insert(r.binding, target);
        *slot += 1;
    }
    use spv::Capability as C;
    let mut caps = vec![
        C::Shader,
        C::Matrix,
        C::Sampled1D,
        C::Image1D,
        C::ImageQuery,
        C::DerivativeControl,
        C::StorageImageExtendedFormats,
        C::SampledCubeArray,
        C::SampleRateShading,
    ];
    if subgroups {
        caps.extend([
            C::GroupNonUniform,
            C::GroupNonUniformVote,
            C::GroupNonUniformArithmetic,
            C::GroupNonUniformBallot,
            C::GroupNonUniformShuffle,
            C::GroupNonUniformShuffleRelative,
            C::GroupNonUniformQuad,
        ]);
    }
    let options = spv::Options {
        lang_version: version,
        flags: spv::WriterFlags::LABEL_VARYINGS | spv::WriterFlags::FORCE_POINT_SIZE,
        capabilities: Some(caps.into_iter().collect()),
        bounds_check_policies: checked_policies(naga::proc::BoundsCheckPolicy::Restrict),
        zero_initialize_workgroup_memory: if version >= (1, 6) {
            spv::ZeroInitializeWorkgroupMemoryMode::Native
        } else {
            spv::ZeroInitializeWorkgroupMemoryMode::Polyfill
        },
        fake_missing_bindings: false,
        binding_map,
        ..Default::default()
    };
    let pipeline =
        spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() };
    spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| format!("naga: {e}"))
}

/// MSL as wgpu's Metal backend writes it: buffers, textures and samplers numbered in binding
/// order, and a sizes buffer after the buffers when there are runtime-sized storage buffers.
fn metal(
    module: &Module,
    info: &ModuleInfo,
    entry: &str,
    version: (u8, u8),
    bindings: &Bindings,
) -> Result<(), String> {
    let (mut buffers, mut textures, mut samplers) = (0u8, 0u8, 0u8);
    let mut resources = msl::BindingMap::default();
    for r in &bindings.resources {
        let mut target = msl::BindTarget::default();
        let next = |n: &mut u8| {
            *n += 1;
            Some(*n - 1)
        };
        match r.kind {
            Kind::Uniform => target.buffer = next(&mut buffers),
            Kind::Storage { writable } => {
                target.buffer = next(&mut buffers);
                target.mutable = writable;
            }
            Kind::Texture => target.texture = next(&mut textures),
            Kind::StorageTexture { writable } => {
                target.texture = next(&mut textures);
                target.mutable = writable;
            }
            Kind::Sampler => {
                target.sampler = next(&mut samplers).map(msl::BindSamplerTarget::Resource)
            }
        }
        resources.insert(r.binding, target);
    }
    let ep_resources = msl::EntryPointResources {
        resources,
        immediates_buffer: None,
        sizes_buffer: bindings.has_storage_buffers().then_some(buffers),
    };
    let options = msl::Options {
        lang_version: version,
        per_entry_point_map: [(entry.to_string(), ep_resources)].into_iter().collect(),
        fake_missing_bindings: false,
        bounds_check_policies: checked_policies(naga::proc::BoundsCheckPolicy::Restrict),
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
        vertex_pulling_transform: true,
        ..Default::default()
    };
    msl::write_string(module, info, &options, &pipeline).map(drop).map_err(|e| format!("naga: {e}"))
}

/// HLSL as wgpu's DX12 backend writes it: constant buffers, shader resource views and
/// unordered access views numbered per bind group, and the special constants (which carry
/// num_workgroups) in the next constant buffer register.
fn hlsl_source(
    module: &Module,
    info: &ModuleInfo,
    entry: &str,
    model: hlsl::ShaderModel,
    bindings: &Bindings,
) -> Result<(), String> {
    let (mut cbv, mut srv, mut uav, mut sampler) = (0u32, 0u32, 0u32, 0u32);
    let target = |space: u32, register: u32| hlsl::BindTarget {
        space: space as u8,
        register,
        binding_array_size: None,
        dynamic_storage_buffer_offsets_index: None,
        restrict_indexing: false,
    };
    let mut binding_map = hlsl::BindingMap::default();
    for r in &bindings.resources {
        let counter = match r.kind {
            Kind::Uniform => &mut cbv,
            Kind::Storage { writable: false } | Kind::Texture => &mut srv,
            Kind::Storage { writable: true } | Kind::StorageTexture { .. } => &mut uav,
            Kind::Sampler => &mut sampler,
        };
        binding_map.insert(r.binding, target(r.binding.group, *counter));
        *counter += 1;
    }
    let options = hlsl::Options {
        shader_model: model,
        binding_map,
        fake_missing_bindings: false,
        special_constants_binding: Some(target(0, cbv)),
        restrict_indexing: true,
        ..Default::default()
    };
    let pipeline =
        hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())) };
    let mut source = String::new();
    hlsl::Writer::new(&mut source, &options, &pipeline)
        .write(module, info, None)
        .map(drop)
        .map_err(|e| format!("naga: {e}"))
}

/// GLSL as wgpu's GL backend writes it: uniform blocks, storage blocks, textures and images
/// each numbered from 0, and bounds checks left to GL.
fn glsl_source(
    module: &Module,
    info: &ModuleInfo,
    entry: &str,
    version: glsl::Version,
    bindings: &Bindings,
) -> Result<String, String> {
    let mut counters = [0u8; 5];
    let mut binding_map = glsl::BindingMap::default();
    for r in &bindings.resources {
        let counter = &mut counters[match r.kind {
            Kind::Uniform => 0,
            Kind::Storage { .. } => 1,
            Kind::Texture => 2,
            Kind::StorageTexture { .. } => 3,
            Kind::Sampler => 4,
        }];
        binding_map.insert(r.binding, *counter);
        *counter += 1;
    }
    let options = glsl::Options {
        version,
        writer_flags: glsl::WriterFlags::ADJUST_COORDINATE_SPACE
            | glsl::WriterFlags::FORCE_POINT_SIZE,
        binding_map,
        zero_initialize_workgroup_memory: true,
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let image_load = match version {
        glsl::Version::Desktop(v) if v >= 430 => naga::proc::BoundsCheckPolicy::ReadZeroSkipWrite,
        _ => naga::proc::BoundsCheckPolicy::Unchecked,
    };
    let policies = naga::proc::BoundsCheckPolicies {
        image_load,
        ..checked_policies(naga::proc::BoundsCheckPolicy::Unchecked)
    };
    let mut text = String::new();
    glsl::Writer::new(&mut text, module, info, &options, &pipeline, policies)
        .and_then(|mut w| w.write())
        .map_err(|e| format!("naga: {e}"))?;
    Ok(text)
}

/// Checks every case (in parallel: the validators are separate processes), prints what each
/// passed and skipped, and returns the failures.
fn check_all(label: &str, cases: &[Case], tools: &Tools) -> Vec<String> {
    let start = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    let next = AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, Outcome)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(case) = cases.get(i) else { break done };
                        done.push((i, check(case, tools)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    outcomes.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    let (mut passes, mut skips) = (0, 0);
    for (i, outcome) in outcomes {
        let status = if outcome.failures.is_empty() { "ok" } else { "FAILED" };
        eprint!("{label}: {status} {}: {}", cases[i].describe(), outcome.passed.join(", "));
        if !outcome.skipped.is_empty() {
            eprint!("; skipped {}", outcome.skipped.join("; "));
        }
        eprintln!();
        passes += outcome.passed.len();
        skips += outcome.skipped.len();
        failures.extend(outcome.failures);
    }
    let modules: BTreeSet<&str> = cases.iter().map(|c| c.shader.as_str()).collect();
    let entries: BTreeSet<(&str, &str)> =
        cases.iter().map(|c| (c.shader.as_str(), c.entry.as_str())).collect();
    eprintln!(
        "{label}: {} modules, {} entry points, {} (module, entry point, overrides) sets through \
         {} backend targets: {passes} passed{}, {skips} skipped, {} failed, in {:.1} s",
        modules.len(),
        entries.len(),
        cases.len(),
        TARGETS.len(),
        if tools.validate() { "" } else { " (validators missing: naga only)" },
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    failures
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} shader/backend failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every entry point of every module in `shaders::ALL`, and of those rewritten for quad views,
/// with its default overrides, where every override it reaches has a default (the others are
/// said, and left to the used sets).
fn default_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let quad_views: Vec<Shader> =
        shaders::QUAD_VIEW_MODULES.iter().map(|s| s.with_quad_views()).collect();
    for shader in shaders::ALL.iter().copied().chain(&quad_views) {
        let (module, info) =
            front_end(shader.source).unwrap_or_else(|e| panic!("shader {}: {e}", shader.name));
        for ep in module.entry_points.iter().filter(|ep| ep.stage == ShaderStage::Compute) {
            let defaults = naga::back::PipelineConstants::default();
            let stage = Some((ShaderStage::Compute, ep.name.as_str()));
            if let Err(e @ naga::back::pipeline_constants::PipelineConstantError::MissingValue(_)) =
                naga::back::pipeline_constants::process_overrides(&module, &info, stage, &defaults)
            {
                eprintln!(
                    "default overrides: skipped shader {}, entry point {}: {e}",
                    shader.name, ep.name
                );
                continue;
            }
            cases.push(Case {
                shader: shader.name.to_string(),
                source: Cow::Borrowed(shader.source),
                entry: ep.name.clone(),
                constants: Vec::new(),
            });
        }
    }
    cases
}

/// The devices to read pipelines from: the first adapter (Vulkan where there is one) with the
/// fast kernels where it has them, and the same adapter forced onto the portable kernels.
fn devices() -> Vec<Arc<Gpu>> {
    let open = |portable_kernels| {
        [BackendChoice::Vulkan, BackendChoice::Auto].into_iter().find_map(|backend| {
            Gpu::new(&GpuOptions { backend, adapter: None, portable_kernels, ..Default::default() })
                .ok()
        })
    };
    let fast = open(false).expect("no GPU adapter at all: install mesa-vulkan-drivers");
    let portable = open(true).expect("the adapter opened once but not twice");
    vec![fast, portable]
}

/// Every (module, entry point, overrides) that a training iteration of every preset (at its
/// own batch size and at two others) and `generate` build, on each device.
fn used_cases() -> Vec<Case> {
    let dataset = Dataset::pattern(256, "synthetic digits (shader_backends test)");
    let gpus = devices();
    let mut cases = Vec::new();
    for gpu in &gpus {
        let variant = if gpu.caps.subgroup_size.is_some() { "fast" } else { "portable" };
        eprintln!("used pipelines: built on {} [{variant} kernels]", gpu.describe());
        for name in gan_gpu::nn::gan::preset_names() {
            let spec = gan_gpu::nn::gan::preset(name).unwrap();
            // `--batch-size` decides some matmul layouts: an operand of one row, or rows that
            // are not a multiple of 4.
            for (i, batch) in [spec.recipe.batch, 1, 6].into_iter().enumerate() {
                let mut spec = spec.clone();
                spec.recipe.batch = batch;
                let trainer = gan_gpu::train::Trainer::new(gpu.clone(), spec, &dataset, 1, None)
                    .unwrap_or_else(|e| panic!("preset {name}, batch {batch}: {e:#}"));
                if i == 0 {
                    let checkpoint = trainer.checkpoint();
                    for count in [1, 6, 100] {
                        gan_gpu::generate::generate(gpu, &checkpoint, count, 1);
                    }
                }
            }
        }
        cases.extend(gpu.compiled_pipelines().into_iter().map(|p| Case {
            shader: p.shader.to_string(),
            source: Cow::Borrowed(p.source),
            entry: p.entry,
            constants: p.constants,
        }));
    }
    if gpus.iter().all(|gpu| gpu.caps.subgroup_size.is_none()) {
        eprintln!(
            "used pipelines: no adapter here has the fast (subgroup) kernels; they are checked \
             with their default overrides only"
        );
    }
    dedup(cases)
}

fn dedup(cases: Vec<Case>) -> Vec<Case> {
    let mut seen = BTreeSet::new();
    cases.into_iter().filter(|c| seen.insert(c.key())).collect()
}

#[test]
fn every_pipeline_the_program_builds_passes_every_backend() {
    let tools = tools();
    let cases = used_cases();
    assert!(!cases.is_empty(), "no pipeline was compiled");
    assert_no_failures(check_all("used pipelines", &cases, &tools));
}

#[test]
fn every_entry_point_with_default_overrides_passes_every_backend() {
    let tools = tools();
    let cases = default_cases();
    assert!(!cases.is_empty(), "shaders::ALL has no compute entry point");
    assert_no_failures(check_all("default overrides", &cases, &tools));
}

/// The check can fail: a compute shader that naga's WGSL front end and validator accept, and
/// that every other backend translates (and spirv-val accepts), but whose GLSL ES 3.1
/// glslangValidator rejects. A `read_write` storage texture is `readonly`/`writeonly`-free
/// in GLSL, which ES 3.1 allows only for the r32f, r32i and r32ui formats (GLSL ES 3.10
/// §4.9); naga writes it all the same. (WebGPU offers read_write rgba8unorm storage only as an
/// adapter-specific format feature, which wgpu's GL backend never exposes.)
#[test]
fn a_shader_one_backend_rejects_fails_naming_that_backend() {
    let tools = tools();
    if !tools.validate() {
        eprintln!("GAN_GPU_SKIP_SHADER_TOOLS=1 without validators: nothing can reject it");
        return;
    }
    let case = Case {
        shader: "invert.wgsl".into(),
        source: Cow::Borrowed(
            "@group(0) @binding(0) var img: texture_storage_2d<rgba8unorm, read_write>;

            @compute @workgroup_size(8, 8)
            fn main(@builtin(global_invocation_id) g: vec3<u32>) {
                let p = vec2<i32>(g.xy);
                textureStore(img, p, 1.0 - textureLoad(img, p));
            }",
        ),
        entry: "main".into(),
        constants: Vec::new(),
    };
    let outcome = check(&case, &tools);
    eprintln!("{outcome:#?}");
    let [failure] = &outcome.failures[..] else { panic!("not exactly one failure: {outcome:#?}") };
    assert!(failure.contains("GLSL ES 3.10"), "the failure does not name the backend: {failure}");
    assert!(
        failure.contains("shader invert.wgsl, entry point main, overrides {defaults}"),
        "the failure does not name the shader: {failure}"
    );
    assert!(failure.contains("glslangValidator"), "{failure}");
    assert_eq!(outcome.passed.len(), TARGETS.len() - 1, "{outcome:#?}");
}

/// spirv-val is really consulted: SPIR-V that naga wrote for one of our kernels, with its
/// `OpCapability Shader` turned into `OpCapability Kernel` (OpenCL's), is rejected.
#[test]
fn spirv_val_rejects_corrupted_spirv() {
    let tools = tools();
    if !tools.validate() {
        eprintln!("GAN_GPU_SKIP_SHADER_TOOLS=1 without validators: nothing to consult");
        return;
    }
    // A module without override constants, which this path does not specialise.
    let (module, info) = front_end(shaders::LOSS.source).unwrap();
    let ep_index = module.entry_points.iter().position(|ep| ep.name == "bce_with_logits").unwrap();
    let bindings = Bindings::of(&module, &info, ep_index);
    let mut words = spirv(&module, &info, "bce_with_logits", (1, 3), false, &bindings).unwrap();
    let bytes = |words: &[u32]| words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let env = ["--target-env", "vulkan1.1"];
    let label = "bce_with_logits corrupted";
    assert_eq!(validate_with(&tools, label, "spv", &bytes(&words), "spirv-val", &env), Ok(()));
    // OpCapability (opcode 17, 2 words) Shader (1) -> Kernel (6).
    let shader_capability = (2 << 16) | 17;
    let at =
        words.windows(2).position(|w| w == [shader_capability, 1]).expect("no OpCapability Shader");
    words[at + 1] = 6;
    let err = validate_with(&tools, label, "spv", &bytes(&words), "spirv-val", &env).unwrap_err();
    assert!(err.contains("spirv-val rejects"), "{err}");
}
