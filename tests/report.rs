//! The training report: a tiny real training run writes report.html and its plots, every image
//! the page names is there and relative, `gan-gpu report` rebuilds it (with FID once evaluation
//! lines appear), and in a headless browser every image loads and a missing one is marked.
//! The browser part runs where `chromium` is found; GAN_GPU_TEST_BROWSER=COMMAND (CI sets it)
//! makes it required.

use std::path::Path;
use std::process::{Command, Output};

use gan_gpu::data::{self, DatasetName, idx};

fn gan_gpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gan-gpu")).args(args).output().expect("running gan-gpu")
}

fn assert_success(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The first 64 MNIST digits as a training set in `dir`: 4 iterations per epoch at batch 16,
/// so summaries (and their epoch grids) come every 4 steps.
fn tiny_dataset(dir: &Path) {
    const COUNT: usize = 64;
    let mnist = data::load_training_set(DatasetName::Mnist, None).unwrap();
    let pixels = &mnist.images[..COUNT * mnist.rows * mnist.cols];
    idx::write_images(&dir.join("train-images-idx3-ubyte"), COUNT, mnist.rows, mnist.cols, pixels)
        .unwrap();
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((COUNT as u32).to_be_bytes());
    labels.extend(&mnist.labels[..COUNT]);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

/// The values of every `name="..."` attribute in `html`.
fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// The chromium-like browser to render with: GAN_GPU_TEST_BROWSER (required to work), else
/// `chromium` if it runs, else none.
fn browser() -> Option<String> {
    let runs = |cmd: &str| {
        Command::new(cmd).arg("--version").output().is_ok_and(|out| out.status.success())
    };
    match std::env::var("GAN_GPU_TEST_BROWSER") {
        Ok(cmd) if !cmd.is_empty() => {
            assert!(
                runs(&cmd),
                "GAN_GPU_TEST_BROWSER={cmd}, but it does not run: apt-get install chromium"
            );
            Some(cmd)
        }
        _ => runs("chromium").then(|| "chromium".to_string()),
    }
}

/// The page's DOM after its scripts ran, as headless chromium dumps it.
fn rendered_dom(browser: &str, page: &Path, profile: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("running the browser");
    assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// (loaded, broken) images as the report's script recorded them on <body>.
fn image_counts(dom: &str) -> (usize, usize) {
    let count = |name: &str| -> usize {
        let values = attributes(dom, name);
        assert_eq!(values.len(), 1, "no {name} on the rendered page: did its script run?\n{dom}");
        values[0].parse().unwrap()
    };
    (count("data-images-loaded"), count("data-images-broken"))
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn has_colour(path: &Path, rgb: [u8; 3]) -> bool {
    image::open(path).unwrap().to_rgb8().pixels().any(|p| p.0 == rgb)
}

#[test]
fn report_of_a_training_run() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    tiny_dataset(&data_dir);
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    assert_success(&gan_gpu(&[
        "train",
        "--iters",
        "12",
        "--batch-size",
        "16",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--sample-every",
        "4",
        "--checkpoint-every",
        "6",
        "--log-every",
        "2",
        "--summarize-every",
        "1",
        "--ema",
        "0.9",
        "--quiet",
        "--out",
        run_s,
    ]));

    // What training wrote: two plots (no FID yet), grids by step and by epoch with their
    // moving-average twins, all on the page.
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!run.join("plots/fid.png").exists());
    for plot in ["losses", "accuracy"] {
        assert_eq!(png_size(&run.join(format!("plots/{plot}.png"))), (1000, 440));
    }
    let sources = attributes(&html, "src");
    let samples: Vec<&str> =
        sources.iter().copied().filter(|s| s.starts_with("samples/")).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(run.join("samples"))
        .unwrap()
        .map(|e| format!("samples/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let mut shown: Vec<String> = samples.iter().map(|s| s.to_string()).collect();
    shown.sort();
    assert_eq!(shown, on_disk);
    // step-4, 8, 12 and epoch-1, 2, 3 (steps 4, 8, 12), each with an -ema twin, oldest first.
    assert_eq!(samples.len(), 12, "{samples:?}");
    assert_eq!(samples[..2], ["samples/step-000004.png", "samples/step-000004-ema.png"]);
    assert_eq!(samples[11], "samples/epoch-003-ema.png");
    assert!(html.contains("step 8 (summary, epoch 2)"), "{html}");
    assert!(html.contains("step 12, moving average"), "{html}");
    assert_eq!(sources.len(), samples.len() + 2, "{sources:?}");
    // Opens from disk: every reference relative and present, nothing fetched from elsewhere.
    let links = attributes(&html, "href");
    let files = links.iter().filter(|l| !l.starts_with('#'));
    for reference in sources.iter().chain(files) {
        assert!(!reference.contains(':') && !reference.starts_with('/'), "{reference}");
        assert!(run.join(reference).is_file(), "{reference} is missing");
    }
    assert!(!html.contains("<link") && !html.contains("<script src"), "{html}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let device = config["device"]["name"].as_str().unwrap();
    assert!(html.contains(&format!("<td>{device}</td>")), "no device {device:?} in {html}");
    // Each series the run logged is drawn (a line and its legend in the series' colour).
    assert!(has_colour(&run.join("plots/losses.png"), [31, 119, 180]), "no D loss");
    assert!(has_colour(&run.join("plots/losses.png"), [230, 120, 20]), "no G loss");
    assert!(has_colour(&run.join("plots/accuracy.png"), [20, 40, 120]), "no summary accuracy");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();

    // Evaluation lines (train --eval-every) add the FID plot and the latest figures; a line
    // torn by a crash is counted, not fatal.
    let eval = r#"{"step":12,"fid":87.25,"is":2.5,"mean_confidence":0.75,"modes_covered":7,"class_hist":[3,0,0,1,2,0,0,2,1,1]}"#;
    let torn = r#"{"step":13,"d_lo"#;
    std::fs::write(run.join("metrics.jsonl"), format!("{metrics}{eval}\n{torn}")).unwrap();
    let out = gan_gpu(&["report", run_s]);
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(png_size(&run.join("plots/fid.png")), (1000, 440));
    assert!(has_colour(&run.join("plots/fid.png"), [30, 140, 60]), "no FID line");
    assert!(attributes(&html, "src").contains(&"plots/fid.png"));
    assert!(html.contains("Latest evaluation") && html.contains("87.2500"), "{html}");
    assert!(html.contains("1 unreadable line(s)"), "{html}");
    let images = attributes(&html, "src").len();

    let Some(browser) = browser() else {
        eprintln!("note: no chromium: the report was not rendered (GAN_GPU_TEST_BROWSER)");
        return;
    };
    let profile = dir.path().join("browser-profile");
    assert_eq!(image_counts(&rendered_dom(&browser, &page, &profile)), (images, 0));
    // A grid gone from disk shows as broken, with a note naming it.
    std::fs::remove_file(run.join("samples/step-000008.png")).unwrap();
    let dom = rendered_dom(&browser, &page, &profile);
    assert_eq!(image_counts(&dom), (images - 1, 1));
    assert!(dom.contains("missing image: samples/step-000008.png"), "{dom}");
}

#[test]
fn report_without_metrics_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = gan_gpu(&["report", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("has no metrics.jsonl"), "{stderr}");
    assert!(!dir.path().join("report.html").exists());
}
