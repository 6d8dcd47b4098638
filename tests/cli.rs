//! The binary's promises to a user: bad input ends in one clear error line and a non-zero
//! exit, never a panic; train -> generate works end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gan_gpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gan-gpu")).args(args).output().expect("running gan-gpu")
}

/// Asserts a clean failure: exit code 1, stderr is exactly one `error:` line mentioning `needle`.
fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "stderr: {stderr}");
    assert!(errors[0].contains(needle), "expected {needle:?} in {:?}", errors[0]);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn unknown_preset_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = gan_gpu(&["train", "--model", "nope", "--out", dir.path().to_str().unwrap()]);
    assert_clean_error(&out, "unknown model \"nope\"");
}

#[test]
fn bad_checkpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write(&path, b"this is not a checkpoint");
    let out = gan_gpu(&[
        "generate",
        "--checkpoint",
        path.to_str().unwrap(),
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_clean_error(&out, "is not a gan-gpu checkpoint");
    let missing = dir.path().join("missing.safetensors");
    let out = gan_gpu(&["generate", "--checkpoint", missing.to_str().unwrap(), "--out", "x"]);
    assert_clean_error(&out, "cannot read checkpoint");
}

#[test]
fn bad_dataset_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A gzip that is not one, and an IDX file with the wrong magic number.
    write(&dir.path().join("train-images-idx3-ubyte.gz"), &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
    write(&dir.path().join("train-labels-idx1-ubyte"), &[0, 0, 8, 1, 0, 0, 0, 0]);
    let out = gan_gpu(&[
        "train",
        "--iters",
        "1",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert_clean_error(&out, "train-images-idx3-ubyte");
    let mut magic = vec![0u8, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
    magic.extend(vec![0u8; 784]);
    write(&dir.path().join("train-images-idx3-ubyte.gz"), &[]);
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte.gz")).unwrap();
    write(&dir.path().join("train-images-idx3-ubyte"), &magic);
    let out = gan_gpu(&[
        "train",
        "--iters",
        "1",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert_clean_error(&out, "magic");
}

#[test]
fn missing_adapter_is_a_clear_error() {
    // No Metal on Linux, no Vulkan/GL on macOS: one of them is absent on every CI machine.
    let backend = if cfg!(target_os = "macos") { "vulkan" } else { "metal" };
    let out = gan_gpu(&["devices", "--backend", backend]);
    assert_clean_error(&out, "no GPU adapter found");
    assert!(String::from_utf8_lossy(&out.stderr).contains("mesa-vulkan-drivers"));
}

#[test]
fn bad_numbers_are_clear_errors() {
    let out = gan_gpu(&["train", "--batch-size", "0", "--out", "unused"]);
    assert_clean_error(&out, "--batch-size");
    let out = gan_gpu(&["train", "--lr=-1", "--out", "unused"]);
    assert_clean_error(&out, "--lr");
    // A batch whose images would not fit one storage binding (2 x 50000 of 3 KiB) is refused
    // up front.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args =
        ["train", "--model", "dcgan", "--batch-size", "50000", "--out", run.to_str().unwrap()];
    assert_clean_error(&gan_gpu(&args), "use a smaller --batch-size");
    assert!(!run.exists(), "a refused run wrote {}", run.display());
    // Kernel-bench options on a model bench.
    for option in ["--seconds", "--shape"] {
        assert_clean_error(&gan_gpu(&["bench", "--model", "mlp", option, "1"]), "--kernel");
    }
}

/// Train a few steps, Ctrl-C-free resume to more steps, then generate images from the result.
#[test]
fn train_resume_generate() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let out = gan_gpu(&[
        "train",
        "--iters",
        "6",
        "--batch-size",
        "16",
        "--out",
        run_s,
        "--quiet",
        "--log-every",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gan_gpu(&[
        "train",
        "--resume",
        "--iters",
        "9",
        "--out",
        run_s,
        "--quiet",
        "--log-every",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["name"], "mlp");
    // Resuming a finished run asks for a larger --iters rather than silently doing nothing.
    let out = gan_gpu(&["train", "--resume", "--iters", "9", "--out", run_s]);
    assert_clean_error(&out, "already at step 9");

    let ck = run.join("checkpoints/latest.safetensors");
    let generate = |seed: &str, name: &str| {
        let images = dir.path().join(name);
        let ck = ck.to_str().unwrap();
        let out = gan_gpu(&[
            "generate",
            "--checkpoint",
            ck,
            "--count",
            "7",
            "--seed",
            seed,
            "--out",
            images.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        images
    };
    let images = generate("5", "gen");
    let idx = gan_gpu::data::idx::read_images(&images.with_extension("idx")).unwrap();
    assert_eq!((idx.count, idx.rows, idx.cols), (7, 28, 28));
    assert!(images.with_extension("png").is_file());
    // The same seed gives the same images; another seed gives others.
    let read = |images: PathBuf| std::fs::read(images.with_extension("idx")).unwrap();
    assert_eq!(read(images.clone()), read(generate("5", "again")));
    assert_ne!(read(images), read(generate("6", "other")));
}

/// `gan-gpu` run with no dataset anywhere: no flag, no GAN_GPU_DATA, an empty cache, downloads
/// off (GAN_GPU_MIRRORS="" stands in for a machine without network).
fn offline(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(args)
        .env_remove("GAN_GPU_DATA")
        .env("XDG_CACHE_HOME", cache)
        .env("GAN_GPU_MIRRORS", "")
        .output()
        .expect("running gan-gpu")
}

#[test]
fn offline_training_falls_back_to_the_shipped_subset() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args =
        ["train", "--iters", "2", "--batch-size", "8", "--quiet", "--out", run.to_str().unwrap()];
    let out = offline(&args, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("10,000-digit subset shipped inside gan-gpu"), "{stderr}");
    assert!(run.join("checkpoints/latest.safetensors").is_file());
}

#[test]
fn missing_dataset_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let run = dir.path().join("run");
    let args = [
        "train",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        missing.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    let out = offline(&args, dir.path());
    if Path::new("/usr/share/datasets/fashion-mnist").exists() {
        // Debian's dataset-fashion-mnist package is installed: the lookup finds it.
        return;
    }
    assert_clean_error(&out, "Fashion-MNIST");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

/// train --ema keeps the generator's moving average: in the checkpoint, in a sample grid beside
/// each one of the trained weights, through a resume that may not change its decay; generate
/// draws from it unless told --no-ema.
#[test]
fn ema_from_train_to_generate() {
    let out = gan_gpu(&["train", "--ema", "1", "--out", "unused"]);
    assert_clean_error(&out, "--ema 1 is not a decay");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--out", run_s, "--quiet"];
        args.extend(extra);
        gan_gpu(&args)
    };
    let out = train(&["--iters", "3", "--batch-size", "16", "--ema", "0.5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run.join("samples/step-000003.png").is_file());
    assert!(run.join("samples/step-000003-ema.png").is_file());
    let ck_path = run.join("checkpoints/latest.safetensors");
    let ck = gan_gpu::checkpoint::Checkpoint::load(&ck_path).unwrap();
    assert_eq!(ck.ema.as_ref().map(|e| e.decay), Some(0.5));
    let out = train(&["--resume", "--iters", "4", "--ema", "0.9"]);
    assert_clean_error(&out, "decay 0.5");
    // Without --ema the resumed run keeps the checkpoint's average.
    let out = train(&["--resume", "--iters", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run.join("samples/step-000004-ema.png").is_file());

    let ck = ck_path.to_str().unwrap();
    let generate = |name: &str, extra: &[&str]| {
        let images = dir.path().join(name);
        let mut args = vec!["generate", "--checkpoint", ck, "--count", "3", "--out"];
        args.push(images.to_str().unwrap());
        args.extend(extra);
        let out = gan_gpu(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(images.with_extension("idx")).unwrap()
    };
    let (average, raw) = (generate("ema", &[]), generate("raw", &["--no-ema"]));
    assert_ne!(average, raw, "--no-ema made the same images as the average");
    // The raw weights are the checkpoint without its average.
    let mut plain = gan_gpu::checkpoint::Checkpoint::load(&ck_path).unwrap();
    plain.ema = None;
    let plain_path = dir.path().join("plain.safetensors");
    plain.save(&plain_path).unwrap();
    let images = dir.path().join("plain");
    let args = ["generate", "--checkpoint", plain_path.to_str().unwrap(), "--count", "3"];
    let out = gan_gpu(&[&args[..], &["--out", images.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(images.with_extension("idx")).unwrap(), raw);
}

/// `eval` refuses what it cannot score before any slow work, each with one line.
#[test]
fn eval_bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    assert_clean_error(&gan_gpu(&["eval"]), "give --checkpoint FILE");
    assert_clean_error(&gan_gpu(&["eval", "--checkpoint", "a", "--images", "b"]), "not both");
    assert_clean_error(
        &gan_gpu(&["eval", "--images", &path("missing.idx")]),
        "no such file or folder",
    );
    assert_clean_error(
        &gan_gpu(&["eval", "--checkpoint", &path("missing.safetensors")]),
        "cannot read checkpoint",
    );
    assert_clean_error(&gan_gpu(&["eval", "--checkpoint", "x", "--count", "0"]), "--count");
    // Images of the wrong size: an IDX file of 27 x 27 digits, a PNG of 30 x 30.
    let small = path("small.idx");
    gan_gpu::data::idx::write_images(Path::new(&small), 3, 27, 27, &[7; 3 * 27 * 27]).unwrap();
    assert_clean_error(&gan_gpu(&["eval", "--images", &small]), "27 x 27 pixels");
    let pngs = dir.path().join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    assert_clean_error(&gan_gpu(&["eval", "--images", pngs.to_str().unwrap()]), "no .png files");
    image::GrayImage::new(28, 28).save(pngs.join("a.png")).unwrap();
    image::GrayImage::new(30, 30).save(pngs.join("b.png")).unwrap();
    assert_clean_error(&gan_gpu(&["eval", "--images", pngs.to_str().unwrap()]), "30 x 30 pixels");
    // train --eval-every: a positive interval, and digits to score.
    let run = path("run");
    let out = gan_gpu(&["train", "--eval-every", "0", "--out", &run]);
    assert_clean_error(&out, "--eval-every must be at least 1");
    let args = ["train", "--eval-every", "5", "--dataset", "fashion-mnist", "--out", &run];
    assert_clean_error(&gan_gpu(&args), "needs --dataset mnist");
    let mlp = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/mlp.toml"),
    )
    .unwrap();
    let tiny = mlp.replace("image = [28, 28, 1]", "image = [14, 14, 1]").replace("784", "196");
    let model = path("tiny.toml");
    write(Path::new(&model), tiny.as_bytes());
    let args = ["train", "--model", &model, "--eval-every", "5", "--out", &run];
    assert_clean_error(&gan_gpu(&args), "makes 14x14x1 images");
    assert!(!Path::new(&run).exists(), "a refused run wrote {run}");
}

#[test]
fn bad_classifier_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let out = gan_gpu(&["classifier", "train", "--epochs", "0", "--out", &path("c.safetensors")]);
    assert_clean_error(&out, "--epochs must be at least 1");
    assert!(!dir.path().join("c.safetensors").exists());
    let out = gan_gpu(&["classifier", "eval", "--weights", &path("missing.safetensors")]);
    assert_clean_error(&out, "cannot read classifier weights");
    // Not safetensors at all, and a GAN checkpoint's format where a classifier's belongs.
    write(Path::new(&path("junk.safetensors")), b"not weights");
    let out = gan_gpu(&["classifier", "eval", "--weights", &path("junk.safetensors")]);
    assert_clean_error(&out, "is not a gan-gpu classifier");
    let header = br#"{"__metadata__":{"format":"gan-gpu-checkpoint-2"}}"#;
    let mut checkpoint = (header.len() as u64).to_le_bytes().to_vec();
    checkpoint.extend_from_slice(header);
    write(Path::new(&path("gan.safetensors")), &checkpoint);
    let out = gan_gpu(&["classifier", "eval", "--weights", &path("gan.safetensors")]);
    assert_clean_error(&out, "is not a gan-gpu classifier");
}

/// interpolate: a walk writes a one-row strip and a looping GIF that goes there and back; an
/// expression writes its terms' images and the result; bad input is one clear error line.
#[test]
fn interpolate_strips_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = ["train", "--iters", "2", "--batch-size", "8", "--quiet", "--out"];
    let out = gan_gpu(&[&args[..], &[run.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ck = run.join("checkpoints/latest.safetensors");
    let strip = dir.path().join("walk/strip.png");
    let interpolate = |extra: &[&str]| {
        let base = ["interpolate", "--checkpoint", ck.to_str().unwrap()];
        gan_gpu(&[&base[..], &["--out", strip.to_str().unwrap()], extra].concat())
    };
    let size = |path: &Path| {
        let img = image::open(path).unwrap();
        (img.width(), img.height())
    };

    let out = interpolate(&["--from", "3", "--to", "8", "--steps", "6"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(size(&strip), (6 * 30 + 2, 30 + 2));
    let gif = std::fs::File::open(strip.with_extension("gif")).unwrap();
    let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(gif)).unwrap();
    let frames = image::AnimationDecoder::into_frames(decoder).collect_frames().unwrap();
    // 6 images there, 4 back (the ends are not repeated), each 4x the image's size.
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].buffer().dimensions(), (4 * 28, 4 * 28));
    assert_eq!(frames[1].buffer(), frames[9].buffer());

    let out = interpolate(&["--expr", "a + b - c", "--point", "a=3,17,40"]);
    assert_clean_error(&out, "no --point defines");
    let arithmetic = ["--expr", "-c + a+b", "--point", "a=3,17,40", "--point", "b=5"];
    let out = interpolate(&[&arithmetic[..], &["--point", "c=7,9"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(size(&strip), (4 * 30 + 2, 30 + 2));

    for (args, needle) in [
        (&["--expr", "a + + b", "--point", "a=1", "--point", "b=2"][..], "two signs in a row"),
        (&["--expr", "a * b", "--point", "a=1"], "\"*\" is not a point name"),
        (&["--expr", "a", "--point", "a=1", "--point", "a=2"], "--point a is given twice"),
        (&["--expr", "a", "--point", "a=1", "--point", "b=2"], "--point b is not used"),
        (&["--expr", "a", "--point", "a=1,x"], "\"x\" is not a seed"),
        (&["--expr", "a", "--point", "a"], "write NAME=SEED"),
        (&["--from", "-1", "--to", "2"], "--from: \"-1\" is not a seed"),
        (&["--from", "1", "--to", "99999999999"], "--to: \"99999999999\" is not a seed"),
        (&["--from", "1", "--to", "2", "--steps", "1"], "--steps 1"),
        (&["--from", "1", "--to", "2", "--slerp"], "--slerp is for normal noise"),
        (&["--from", "1"], "give --from SEED and --to SEED"),
        (&["--from", "1", "--to", "2", "--expr", "a"], "not both"),
        (&["--expr", "a", "--point", "a=1", "--slerp"], "--slerp is for walks"),
    ] {
        assert_clean_error(&interpolate(args), needle);
    }
    let missing = dir.path().join("missing.safetensors");
    let args = ["interpolate", "--checkpoint", missing.to_str().unwrap(), "--from", "1"];
    let out = gan_gpu(&[&args[..], &["--to", "2", "--out", strip.to_str().unwrap()]].concat());
    assert_clean_error(&out, "cannot read checkpoint");
}

/// Starts `gan-gpu args`, waits for its "training" line on stderr, sends it SIGINT (a Ctrl-C)
/// and returns its exit code and everything it wrote on stderr.
fn interrupt_once_training(args: &[&str]) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gan-gpu"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("running gan-gpu");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.lines().any(|l| l.starts_with("training")) {
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "no training line: {seen}");
    }
    // Let a few steps run, so that the interruption lands inside the loop.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    stderr.read_to_string(&mut seen).unwrap();
    (child.wait().unwrap().code(), seen)
}

#[test]
fn ctrl_c_saves_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, stderr) = interrupt_once_training(&[
        "train",
        "--iters",
        "1000000",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted after"), "stderr: {stderr}");
    let latest = out.join("checkpoints/latest.safetensors");
    let generated = gan_gpu(&[
        "generate",
        "--checkpoint",
        latest.to_str().unwrap(),
        "--count",
        "4",
        "--out",
        dir.path().join("grid.png").to_str().unwrap(),
    ]);
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));

    let weights = dir.path().join("classifier.safetensors");
    let (code, stderr) = interrupt_once_training(&[
        "classifier",
        "train",
        "--quiet",
        "--out",
        weights.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted after"), "stderr: {stderr}");
    let evaluated =
        gan_gpu(&["classifier", "eval", "--json", "--weights", weights.to_str().unwrap()]);
    assert!(evaluated.status.success(), "{}", String::from_utf8_lossy(&evaluated.stderr));
    let accuracy: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    assert!((0.0..=1.0).contains(&accuracy["accuracy"].as_f64().unwrap()), "{accuracy}");
}
