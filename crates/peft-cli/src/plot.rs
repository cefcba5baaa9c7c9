//! Plots as PNG files, drawn with `plotters`: the training curve of `peft train` / `peft demo`
//! (loss per step, its moving average, evaluation points) and the confusion matrix of
//! `peft predict --plot`.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (the `dejavu` crate) through plotters'
//! `ab_glyph` feature, so no system font library (fontconfig) is needed anywhere.

use anyhow::{Context, Result, bail, ensure};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

use crate::metrics::Report;
use crate::train::EvalPoint;

/// The size of the training curve.
pub const CURVE_SIZE: (u32, u32) = (900, 520);
/// Steps the moving average spans.
const WINDOW: usize = 10;
/// The family name the embedded font is registered under.
const FONT: &str = "sans-serif";
const RAW: RGBColor = RGBColor(160, 190, 230);
const SMOOTH: RGBColor = RGBColor(20, 70, 160);
const EVAL_LOSS: RGBColor = RGBColor(220, 110, 20);
const EVAL_ACCURACY: RGBColor = RGBColor(30, 140, 60);

/// Registers the embedded font once; plotters draws no text without it.
fn font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    ensure!(ok, "the embedded DejaVu Sans font could not be read");
    Ok(())
}

/// Writes the training curve to `path` (a temporary file renamed into place): the loss of
/// every step (`losses[i]` is step `i + 1`), its moving average over 10 steps, and the
/// evaluation points (loss on the left axis; accuracy, when measured, on a right axis 0..1).
///
/// Steps whose loss is NaN or infinite are left out (the line breaks there).
///
/// # Errors
/// No steps, or no finite loss at all (a diverged run); a file that cannot be written.
pub fn write_loss_curve(losses: &[f32], evals: &[EvalPoint], path: &Path) -> Result<()> {
    ensure!(!losses.is_empty(), "no training steps to plot");
    let finite = |v: &f32| v.is_finite();
    let eval_losses: Vec<(f64, f64)> = evals.iter().filter(|e| finite(&e.loss)).map(|e| (e.step as f64, f64::from(e.loss))).collect();
    let accuracies: Vec<(f64, f64)> =
        evals.iter().filter_map(|e| e.accuracy.filter(finite).map(|a| (e.step as f64, f64::from(a)))).collect();
    let (lo, hi) = match losses.iter().copied().filter(finite).map(f64::from).chain(eval_losses.iter().map(|p| p.1)).fold(None, |range, v| {
        Some(range.map_or((v, v), |(lo, hi): (f64, f64)| (lo.min(v), hi.max(v))))
    }) {
        Some(range) => range,
        None => bail!("no finite loss to plot: all {} steps are NaN or infinite (the run diverged; try a lower --lr)", losses.len()),
    };
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.1 };
    let (y_lo, y_hi) = ((lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY }), hi + pad);
    let last = losses.len().max(evals.iter().map(|e| e.step).max().unwrap_or(0)) as f64;
    let x_range = if last > 1.0 { 1.0..last } else { 0.0..2.0 };
    font()?;

    let (width, height) = CURVE_SIZE;
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = if accuracies.is_empty() { "Training loss" } else { "Training loss and evaluation" };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 24))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .right_y_label_area_size(if accuracies.is_empty() { 12 } else { 64 })
            .build_cartesian_2d(x_range.clone(), y_lo..y_hi)?
            .set_secondary_coord(x_range, 0.0..1.0);
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(205, 205, 205))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        if !accuracies.is_empty() {
            chart
                .configure_secondary_axes()
                .y_desc("eval accuracy")
                .axis_desc_style((FONT, 16))
                .label_style((FONT, 13))
                .y_label_formatter(&|y| format!("{y:.1}"))
                .draw()?;
        }
        let mut first = true;
        for segment in finite_runs(losses) {
            let drawn = chart.draw_series(LineSeries::new(segment, RAW.stroke_width(1)))?;
            if std::mem::take(&mut first) {
                drawn.label("loss per step").legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], RAW.stroke_width(2)));
            }
        }
        chart
            .draw_series(LineSeries::new(moving_average(losses, WINDOW), SMOOTH.stroke_width(2)))?
            .label(format!("moving average ({WINDOW} steps)"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], SMOOTH.stroke_width(2)));
        if !eval_losses.is_empty() {
            chart.draw_series(LineSeries::new(eval_losses.iter().copied(), EVAL_LOSS.stroke_width(1)))?;
            chart
                .draw_series(eval_losses.iter().map(|&p| Circle::new(p, 4, EVAL_LOSS.filled())))?
                .label("eval loss")
                .legend(|(x, y)| Circle::new((x + 12, y), 4, EVAL_LOSS.filled()));
        }
        if !accuracies.is_empty() {
            chart.draw_secondary_series(LineSeries::new(accuracies.iter().copied(), EVAL_ACCURACY.stroke_width(1)))?;
            chart
                .draw_secondary_series(accuracies.iter().map(|&p| TriangleMarker::new(p, 6, EVAL_ACCURACY.filled())))?
                .label("eval accuracy (right axis)")
                .legend(|(x, y)| TriangleMarker::new((x + 12, y), 6, EVAL_ACCURACY.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
        root.present()?;
    }
    save_png(&pixels, (width, height), path)
}

/// Writes the confusion matrix of `report` to `path`: rows are the true classes (the first at
/// the top), columns the predicted ones, each cell the count shaded by its share of the row.
///
/// # Errors
/// No classes or no rows counted; a file that cannot be written.
pub fn write_confusion_matrix(report: &Report, path: &Path) -> Result<()> {
    let n = report.labels.len();
    ensure!(n > 0, "no classes: nothing to plot in a confusion matrix");
    ensure!(report.total() > 0, "no labelled rows: nothing to plot in a confusion matrix");
    font()?;
    // Each class gets room for its cell and name; very many classes make a large, still legible image.
    let longest = report.labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as u32;
    let label_room = (longest * 8 + 24).clamp(40, 220);
    let cell = (560 / n as u32).clamp(28, 90);
    let side = cell * n as u32;
    // At least wide enough for the caption, whatever the number of classes.
    let (width, height) = ((side + label_room + 60).max(480), side + label_room + 70);
    let last = n as i32 - 1;
    let name = |i: i32| usize::try_from(i).ok().and_then(|i| report.labels.get(i)).cloned().unwrap_or_default();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let caption = format!("Confusion matrix: accuracy {:.3} on {} rows", report.accuracy(), report.total());
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 18))
            .margin(14)
            .x_label_area_size(label_room)
            .y_label_area_size(label_room)
            .build_cartesian_2d((0..last).into_segmented(), (0..last).into_segmented())?;
        // The y axis counts up from the bottom; true class t sits at y = last - t so class 0 is on top.
        let x_name = |v: &SegmentValue<i32>| if let SegmentValue::CenterOf(i) = v { name(*i) } else { String::new() };
        let y_name = |v: &SegmentValue<i32>| if let SegmentValue::CenterOf(i) = v { name(last - *i) } else { String::new() };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted class")
            .y_desc("true class")
            .axis_desc_style((FONT, 16))
            .label_style((FONT, 13))
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_name)
            .draw()?;
        let mut cells = Vec::with_capacity(n * n);
        for (t, row) in report.confusion.iter().enumerate() {
            let row_total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
                cells.push((p as i32, last - t as i32, count, share));
            }
        }
        chart.draw_series(cells.iter().map(|&(x, y, _, share)| {
            let shade = |full: u8| (255.0 - share * (255.0 - f64::from(full))).round() as u8;
            let color = RGBColor(shade(20), shade(70), shade(160));
            Rectangle::new([(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))], color.filled())
        }))?;
        let text_size = f64::from(cell.min(40)) * 0.4;
        chart.draw_series(cells.iter().map(|&(x, y, count, share)| {
            let color: &'static RGBColor = if share > 0.5 { &WHITE } else { &BLACK };
            let style = TextStyle::from((FONT, text_size).into_font()).color(color).pos(Pos::new(HPos::Center, VPos::Center));
            Text::new(count.to_string(), (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)), style)
        }))?;
        root.present()?;
    }
    save_png(&pixels, (width, height), path)
}

/// The runs of consecutive finite losses as `(step, loss)` points (steps count from 1).
fn finite_runs(losses: &[f32]) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for (i, &l) in losses.iter().enumerate() {
        match (l.is_finite(), runs.last_mut()) {
            (true, Some(run)) => run.push(((i + 1) as f64, f64::from(l))),
            (false, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// The mean of the finite losses among the last `window` steps, at each step that has one.
fn moving_average(losses: &[f32], window: usize) -> Vec<(f64, f64)> {
    (0..losses.len())
        .filter_map(|i| {
            let from = (i + 1).saturating_sub(window);
            let tail: Vec<f64> = losses[from..=i].iter().filter(|l| l.is_finite()).map(|&l| f64::from(l)).collect();
            (!tail.is_empty()).then(|| ((i + 1) as f64, tail.iter().sum::<f64>() / tail.len() as f64))
        })
        .collect()
}

/// Encodes RGB `pixels` as a PNG at `path`, through a temporary file renamed into place.
fn save_png(pixels: &[u8], (width, height): (u32, u32), path: &Path) -> Result<()> {
    let tmp = path.with_extension("png.tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("cannot start the PNG")?;
    writer.write_image_data(pixels).context("cannot write the PNG")?;
    writer.finish().context("cannot finish the PNG")?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PNG's size and the variance of its grey levels (0 for a blank image).
    fn decode(path: &Path) -> ((u32, u32), f64) {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("open")));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("pixels");
        let grey: Vec<f64> = buf[..info.buffer_size()].chunks(3).map(|p| p.iter().map(|&c| f64::from(c)).sum::<f64>() / 3.0).collect();
        let mean = grey.iter().sum::<f64>() / grey.len() as f64;
        ((info.width, info.height), grey.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / grey.len() as f64)
    }

    #[test]
    fn loss_curve_is_a_drawn_png_of_the_right_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("loss.png");
        let losses: Vec<f32> = (0..60).map(|i| 1.0 / (1.0 + i as f32) + 0.05 * ((i * 7 % 5) as f32)).collect();
        let evals = [EvalPoint { step: 20, loss: 0.4, accuracy: Some(0.6) }, EvalPoint { step: 40, loss: 0.3, accuracy: Some(0.8) }];
        write_loss_curve(&losses, &evals, &path).expect("writes");
        let (size, variance) = decode(&path);
        assert_eq!(size, CURVE_SIZE);
        assert!(variance > 100.0, "the plot is (nearly) blank: grey variance {variance}");
        assert!(!dir.path().join("loss.png.tmp").exists());
    }

    #[test]
    fn nan_steps_are_skipped_and_all_nan_or_empty_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("loss.png");
        write_loss_curve(&[1.0, f32::NAN, 0.8, f32::INFINITY, 0.5], &[EvalPoint { step: 2, loss: f32::NAN, accuracy: None }], &path).expect("some finite steps");
        assert!(decode(&path).1 > 100.0);
        let err = write_loss_curve(&[f32::NAN, f32::NAN], &[], &path).expect_err("all NaN");
        assert!(err.to_string().contains("no finite loss"), "{err}");
        assert!(write_loss_curve(&[], &[], &path).expect_err("empty").to_string().contains("no training steps"));
        // One step, or a flat curve, still gives a plot.
        write_loss_curve(&[0.7], &[], &path).expect("one step");
        write_loss_curve(&[0.7, 0.7, 0.7], &[], &path).expect("flat");
    }

    #[test]
    fn confusion_matrix_is_a_drawn_png() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("confusion.png");
        let report = Report::new(vec!["negative".into(), "neutral".into(), "positive".into()], [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0), (2, 2)]);
        write_confusion_matrix(&report, &path).expect("writes");
        let ((w, h), variance) = decode(&path);
        assert!(w > 200 && h > 200, "{w}x{h}");
        assert!(variance > 100.0, "blank: {variance}");
        let empty = Report::new(vec!["a".into(), "b".into()], []);
        assert!(write_confusion_matrix(&empty, &path).expect_err("no rows").to_string().contains("no labelled rows"));
        assert!(write_confusion_matrix(&Report::new(Vec::new(), []), &path).is_err());
        write_confusion_matrix(&Report::new(vec!["only".into()], [(0, 0)]), &path).expect("one class");
    }

    #[test]
    fn moving_average_smooths_and_skips_nan() {
        assert_eq!(moving_average(&[1.0, 3.0, 5.0], 2), vec![(1.0, 1.0), (2.0, 2.0), (3.0, 4.0)]);
        assert_eq!(moving_average(&[f32::NAN, 3.0], 2), vec![(2.0, 3.0)]);
        assert_eq!(finite_runs(&[1.0, f32::NAN, 2.0, 3.0]), vec![vec![(1.0, 1.0)], vec![(3.0, 2.0), (4.0, 3.0)]]);
    }
}
