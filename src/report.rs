//! The training report: OUT/report.html with the run's configuration and device, the sample
//! grids over time, plots of the losses, the discriminator's accuracy and FID (OUT/plots/*.png),
//! and the latest evaluation. Everything is read back from what `train` wrote (metrics.jsonl,
//! config.json, samples/), so `gan-gpu report OUT` can rebuild it at any time. The page uses
//! relative paths only and no network, so it opens straight from disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use serde_json::{Map, Value};

use crate::checkpoint::write_atomically;

/// DejaVu Sans cut down to printable ASCII (see assets/README.md): plot text needs no system
/// fonts.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ASCII.ttf");
const FONT_FAMILY: &str = "sans-serif";

const PLOT_SIZE: (u32, u32) = (1000, 440);
/// Width of the legend column right of each plot.
const LEGEND_WIDTH: u32 = 210;

/// One line of a plot: a metrics.jsonl key drawn over step.
struct Series {
    key: &'static str,
    label: &'static str,
    color: RGBColor,
    /// Sparse series (summaries, evaluations) get a dot on each value.
    dots: bool,
}

struct Plot {
    file: &'static str,
    title: &'static str,
    y_label: &'static str,
    /// A fixed y range (accuracies); otherwise the data's.
    y_range: Option<(f64, f64)>,
    series: &'static [Series],
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const NAVY: RGBColor = RGBColor(20, 40, 120);
const DARK_RED: RGBColor = RGBColor(170, 20, 30);
const GREEN: RGBColor = RGBColor(30, 140, 60);

const PLOTS: [Plot; 3] = [
    Plot {
        file: "losses.png",
        title: "Losses",
        y_label: "binary cross-entropy",
        y_range: None,
        series: &[
            Series { key: "d_loss", label: "D loss", color: BLUE, dots: false },
            Series { key: "g_loss", label: "G loss", color: ORANGE, dots: false },
        ],
    },
    Plot {
        file: "accuracy.png",
        title: "Discriminator accuracy",
        y_label: "accuracy",
        y_range: Some((-0.02, 1.02)),
        series: &[
            Series { key: "d_acc_real", label: "on real (batch)", color: BLUE, dots: false },
            Series { key: "d_acc_fake", label: "on fake (batch)", color: ORANGE, dots: false },
            Series {
                key: "summary_d_acc_real",
                label: "on real (summary)",
                color: NAVY,
                dots: true,
            },
            Series {
                key: "summary_d_acc_fake",
                label: "on fake (summary)",
                color: DARK_RED,
                dots: true,
            },
        ],
    },
    Plot {
        file: "fid.png",
        title: "Classifier-FID of 2000 samples (lower is better)",
        y_label: "FID",
        y_range: None,
        series: &[Series { key: "fid", label: "FID", color: GREEN, dots: true }],
    },
];

/// What metrics.jsonl holds, by step. A step logged twice (a run resumed from an earlier
/// checkpoint logs its steps again) keeps its latest value.
#[derive(Default)]
struct Metrics {
    /// key -> step -> value, for every numeric key.
    values: BTreeMap<String, BTreeMap<u64, f64>>,
    /// The latest line of each kind: training metrics and evaluation (a line with `fid`).
    last_train: Option<Map<String, Value>>,
    last_eval: Option<Map<String, Value>>,
    /// epoch -> step of the summary lines, to caption epoch-NNN.png grids.
    epoch_steps: BTreeMap<u64, u64>,
    /// Lines that are not a JSON object with a step (a line torn by a crash).
    unreadable: usize,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let object = serde_json::from_str::<Value>(line).ok().and_then(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            });
            let Some((object, step)) =
                object.and_then(|o| o.get("step").and_then(Value::as_u64).map(|s| (o, s)))
            else {
                m.unreadable += 1;
                continue;
            };
            for (key, value) in &object {
                // Non-finite losses are written as null: they leave a gap.
                if let (Some(v), true) = (value.as_f64(), key != "step") {
                    m.values.entry(key.clone()).or_default().insert(step, v);
                }
            }
            if let Some(epoch) = object.get("epoch").and_then(Value::as_u64) {
                m.epoch_steps.insert(epoch, step);
            }
            if object.contains_key("fid") {
                m.last_eval = Some(object);
            } else if object.contains_key("d_loss") {
                m.last_train = Some(object);
            }
        }
        m
    }

    fn series(&self, key: &str) -> Vec<(f64, f64)> {
        self.values
            .get(key)
            .map(|s| s.iter().map(|(&step, &v)| (step as f64, v)).collect())
            .unwrap_or_default()
    }
}

/// A sample grid of samples/: step-NNNNNN.png, or epoch-NNN.png written by a summary; either
/// with an -ema.png twin drawn by the generator's moving average (train --ema).
struct SampleGrid {
    file: String,
    step: Option<u64>,
    epoch: Option<u64>,
    moving_average: bool,
}

fn sample_grids(out: &Path, metrics: &Metrics, iters_per_epoch: Option<u64>) -> Vec<SampleGrid> {
    let Ok(entries) = std::fs::read_dir(out.join("samples")) else { return Vec::new() };
    let parse = |file: String| {
        let stem = file.strip_suffix(".png")?;
        let (stem, moving_average) = match stem.strip_suffix("-ema") {
            Some(stem) => (stem, true),
            None => (stem, false),
        };
        let number = |prefix: &str| stem.strip_prefix(prefix)?.parse::<u64>().ok();
        let (step, epoch) = match (number("step-"), number("epoch-")) {
            (Some(step), _) => (Some(step), None),
            (None, Some(epoch)) => {
                let step = metrics
                    .epoch_steps
                    .get(&epoch)
                    .copied()
                    .or_else(|| iters_per_epoch.map(|n| n * epoch));
                (step, Some(epoch))
            }
            (None, None) => return None,
        };
        Some(SampleGrid { file, step, epoch, moving_average })
    };
    let mut grids: Vec<SampleGrid> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter_map(parse).collect();
    grids.sort_by_key(|g| (g.step, g.epoch.is_some(), g.moving_average));
    grids
}

/// Writes OUT/plots/*.png and OUT/report.html (each atomically) from what training wrote to
/// OUT; returns the report's path.
pub fn write(out: &Path) -> Result<PathBuf> {
    let metrics_path = out.join("metrics.jsonl");
    if !metrics_path.is_file() {
        bail!("{} has no metrics.jsonl: give the --out directory of a training run", out.display());
    }
    let text = std::fs::read_to_string(&metrics_path)
        .with_context(|| format!("reading {}", metrics_path.display()))?;
    let metrics = Metrics::parse(&text);
    let config_path = out.join("config.json");
    let config: Option<Value> = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", config_path.display()))?,
        ),
        Err(_) => None,
    };
    let iters_per_epoch =
        config.as_ref().and_then(|c| c.pointer("/train/iters_per_epoch")?.as_u64());

    let mut plots = Vec::new();
    for plot in &PLOTS {
        let lines: Vec<(&Series, Vec<(f64, f64)>)> = plot
            .series
            .iter()
            .map(|s| (s, metrics.series(s.key)))
            .filter(|(_, points)| !points.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        let png =
            draw_plot(plot, &lines).with_context(|| format!("drawing the plot {}", plot.file))?;
        write_atomically(&out.join("plots").join(plot.file), &png)?;
        plots.push(plot);
    }
    let grids = sample_grids(out, &metrics, iters_per_epoch);
    let html = page(&metrics, config.as_ref(), &plots, &grids);
    let path = out.join("report.html");
    write_atomically(&path, html.as_bytes())?;
    Ok(path)
}

/// The plot as PNG bytes: the series over step, with a legend beside the chart.
fn draw_plot(plot: &Plot, lines: &[(&Series, Vec<(f64, f64)>)]) -> Result<Vec<u8>> {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the shipped font is a valid TTF"))
    });
    let points = || lines.iter().flat_map(|(_, p)| p.iter());
    let (x_min, x_max) = bounds(points().map(|p| p.0));
    let (y_min, y_max) = plot.y_range.unwrap_or_else(|| {
        let (low, high) = bounds(points().map(|p| p.1));
        let pad = (high - low) * 0.05;
        (low - pad, high + pad)
    });
    let (width, height) = PLOT_SIZE;
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (chart_area, legend_area) = root.split_horizontally(width - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(plot.title, (FONT_FAMILY, 24))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x_min..x_max, y_min..y_max)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(plot.y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style((FONT_FAMILY, 15))
            .axis_desc_style((FONT_FAMILY, 17))
            .light_line_style(RGBColor(236, 236, 236))
            .bold_line_style(RGBColor(205, 205, 205))
            .draw()?;
        for (series, points) in lines {
            let style = series.color.stroke_width(2);
            chart.draw_series(LineSeries::new(points.iter().copied(), style))?;
            if series.dots {
                let dot = |p: &(f64, f64)| Circle::new(*p, 4, series.color.filled());
                chart.draw_series(points.iter().map(dot))?;
            }
        }
        let legend_font = (FONT_FAMILY, 16).into_font().color(&BLACK);
        for (i, (series, _)) in lines.iter().enumerate() {
            let y = 70 + 30 * i as i32;
            let style = series.color.stroke_width(3);
            legend_area.draw(&PathElement::new(vec![(4, y), (34, y)], style))?;
            if series.dots {
                legend_area.draw(&Circle::new((19, y), 4, series.color.filled()))?;
            }
            legend_area.draw(&Text::new(series.label, (42, y - 9), legend_font.clone()))?;
        }
        root.present()?;
    }
    let image = image::RgbImage::from_raw(width, height, rgb).expect("the buffer fits the image");
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

/// The range of `values`, widened when they are all equal.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) =
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if high > low { (low, high) } else { (low - 1.0, high + 1.0) }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A metric as report text: integers as they are, other numbers to 4 decimals.
fn show(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v.abs() >= 1000.0 { format!("{v:.1}") } else { format!("{v:.4}") }
        }
        Value::Null => "-".to_string(),
        other => show_setting(other),
    }
}

/// A configuration value as report text: numbers as the f32 they were set as (0.0002, not
/// 0.000199999994), objects as "key value, ...", absent values as "-".
fn show_setting(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => {
            let v = n.as_f64().unwrap_or(f64::NAN) as f32;
            if v != 0.0 && v.abs() < 1e-3 { format!("{v:e}") } else { v.to_string() }
        }
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items.iter().map(show_setting).collect::<Vec<_>>().join(", "),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| format!("{k} {}", show_setting(v)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The fields of a metrics.jsonl line as table rows: step first, then the known figures in a
/// fixed order, then any others.
fn metric_rows(line: &Map<String, Value>) -> Vec<(&str, Cell)> {
    const ORDER: [&str; 11] = [
        "step",
        "epoch",
        "d_loss",
        "g_loss",
        "d_acc_real",
        "d_acc_fake",
        "images_per_s",
        "fid",
        "is",
        "mean_confidence",
        "modes_covered",
    ];
    let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
    let mut fields: Vec<(&String, &Value)> = line.iter().collect();
    fields.sort_by_key(|(k, _)| rank(k));
    fields
        .into_iter()
        .map(|(k, v)| {
            let cell = match v.as_array() {
                Some(items) => Cell::Counts(items.iter().map(show).collect()),
                None => Cell::Text(show(v)),
            };
            (k.as_str(), cell)
        })
        .collect()
}

/// A table cell: text, or a list shown as a row of counts under their indices (class_hist).
enum Cell {
    Text(String),
    Counts(Vec<String>),
}

/// A two-column table of (name, cell) rows, escaped.
fn table(html: &mut String, rows: &[(&str, Cell)]) {
    html.push_str("<table>\n");
    for (name, cell) in rows {
        let _ = write!(html, "<tr><th>{}</th><td>", escape(name));
        match cell {
            Cell::Text(text) => html.push_str(&escape(text)),
            Cell::Counts(counts) => {
                html.push_str("<table class=\"counts\"><tr>");
                for i in 0..counts.len() {
                    let _ = write!(html, "<th>{i}</th>");
                }
                html.push_str("</tr><tr>");
                for count in counts {
                    let _ = write!(html, "<td>{}</td>", escape(count));
                }
                html.push_str("</tr></table>");
            }
        }
        html.push_str("</td></tr>\n");
    }
    html.push_str("</table>\n");
}

/// Marks images that failed to load (a visible note beside each) and records the counts on
/// <body> (data-images-loaded, data-images-broken), which the tests read from the DOM.
const IMAGE_CHECK: &str = r#"<script>
window.addEventListener("load", function () {
  var images = document.images, broken = 0;
  for (var i = 0; i < images.length; i++) {
    var img = images[i];
    if (img.complete && img.naturalWidth > 0) continue;
    broken++;
    img.classList.add("broken");
    var note = document.createElement("p");
    note.className = "missing";
    note.textContent = "missing image: " + img.getAttribute("src");
    img.insertAdjacentElement("afterend", note);
  }
  document.body.setAttribute("data-images-loaded", images.length - broken);
  document.body.setAttribute("data-images-broken", broken);
});
</script>
"#;

const STYLE: &str = "<style>
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.2em 0.8em; border-bottom: 1px solid #eee; vertical-align: top; }
th { font-weight: 600; color: #444; }
table.counts th, table.counts td { text-align: right; padding: 0.1em 0.5em; }
img.plot { max-width: 100%; display: block; margin: 0.8em 0; }
.grids { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figcaption { text-align: center; font-size: 0.9em; color: #444; }
img.grid { image-rendering: pixelated; border: 1px solid #ddd; }
img.broken { min-width: 120px; min-height: 40px; outline: 3px solid #c00; }
p.missing { color: #c00; font-weight: 600; margin: 0.2em 0; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
</style>
";

fn page(
    metrics: &Metrics,
    config: Option<&Value>,
    plots: &[&Plot],
    grids: &[SampleGrid],
) -> String {
    let get = |pointer: &str| config.and_then(|c| c.pointer(pointer)).map(show_setting);
    let model = get("/model/name").unwrap_or_else(|| "unknown model".into());
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>gan-gpu report: {}</title>\n{STYLE}</head>\n<body>\n<h1>gan-gpu training report: {}</h1>\n",
        escape(&model),
        escape(&model)
    );
    let mut sections = vec![("configuration", "configuration"), ("plots", "plots")];
    if metrics.last_eval.is_some() {
        sections.push(("evaluation", "latest evaluation"));
    }
    sections.push(("samples", "samples"));
    let links: Vec<String> =
        sections.iter().map(|(id, name)| format!("<a href=\"#{id}\">{name}</a>")).collect();
    let _ = writeln!(html, "<p>{}</p>", links.join(" | "));

    if let Some(last) = &metrics.last_train {
        html.push_str("<h2>Latest training metrics</h2>\n");
        table(&mut html, &metric_rows(last));
    } else {
        html.push_str("<p>No training metrics logged yet.</p>\n");
    }
    if metrics.unreadable > 0 {
        let _ = writeln!(
            html,
            "<p>{} unreadable line(s) of metrics.jsonl skipped.</p>",
            metrics.unreadable
        );
    }

    html.push_str("<h2 id=\"configuration\">Configuration</h2>\n");
    match config {
        Some(c) => {
            let fields = [
                ("model", "/model/name"),
                ("description", "/model/description"),
                ("device", "/device/name"),
                ("backend", "/device/backend"),
                ("device capabilities", "/device/caps"),
                ("dataset", "/dataset"),
                ("iterations", "/train/iters"),
                ("batch", "/model/recipe/batch"),
                ("seed", "/train/seed"),
                ("discriminator optimizer", "/model/recipe/d_optimizer"),
                ("generator optimizer", "/model/recipe/g_optimizer"),
                ("resumed from", "/resumed_from"),
                ("gan-gpu version", "/version"),
            ];
            let rows: Vec<(&str, Cell)> =
                fields.iter().filter_map(|&(name, p)| Some((name, Cell::Text(get(p)?)))).collect();
            table(&mut html, &rows);
            let pretty = serde_json::to_string_pretty(c).unwrap_or_default();
            let _ = writeln!(
                html,
                "<details><summary>config.json</summary>\n<pre>{}</pre>\n</details>",
                escape(&pretty)
            );
        }
        None => html.push_str("<p>No config.json in this directory.</p>\n"),
    }

    html.push_str("<h2 id=\"plots\">Plots</h2>\n");
    if plots.is_empty() {
        html.push_str("<p>Nothing to plot yet.</p>\n");
    }
    for plot in plots {
        let _ = writeln!(
            html,
            "<img class=\"plot\" src=\"plots/{}\" alt=\"{}\" width=\"{}\" height=\"{}\">",
            plot.file,
            escape(plot.title),
            PLOT_SIZE.0,
            PLOT_SIZE.1
        );
    }

    if let Some(eval) = &metrics.last_eval {
        html.push_str("<h2 id=\"evaluation\">Latest evaluation</h2>\n");
        table(&mut html, &metric_rows(eval));
    }

    html.push_str("<h2 id=\"samples\">Samples over time</h2>\n");
    if grids.is_empty() {
        html.push_str("<p>No sample grids yet.</p>\n");
    }
    html.push_str("<div class=\"grids\">\n");
    for grid in grids {
        let step = grid.step.map_or("step ?".to_string(), |s| format!("step {s}"));
        let mut caption = match grid.epoch {
            Some(e) => format!("{step} (summary, epoch {e})"),
            None => step,
        };
        if grid.moving_average {
            caption.push_str(", moving average");
        }
        let _ = writeln!(
            html,
            "<figure><img class=\"grid\" src=\"samples/{}\" alt=\"samples at {}\">\
             <figcaption>{}</figcaption></figure>",
            escape(&grid.file),
            escape(&caption),
            escape(&caption)
        );
    }
    html.push_str("</div>\n");
    html.push_str(IMAGE_CHECK);
    html.push_str("</body>\n</html>\n");
    html
}
