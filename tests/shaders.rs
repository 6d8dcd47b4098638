//! Every WGSL module parses and validates with naga, and every file in shaders/ is one of them
//! or a part of them.

use gan_gpu::shaders;

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut registered: Vec<String> = shaders::ALL.iter().map(|s| s.name.to_string()).collect();
    registered.extend(shaders::PARTS.iter().map(|part| part.to_string()));
    registered.sort();
    assert_eq!(files, registered, "shaders/ and gan_gpu::shaders::ALL disagree");
}

#[test]
fn every_shader_parses_and_validates() {
    for shader in shaders::ALL {
        let module = naga::front::wgsl::parse_str(shader.source)
            .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
        assert!(!module.entry_points.is_empty(), "{} has no entry point", shader.name);
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", shader.name, e.emit_to_string(shader.source)));
    }
}
