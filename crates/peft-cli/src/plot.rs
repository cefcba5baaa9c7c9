//! A loss curve as a PNG: the raw loss per step (light) and its moving average (dark), with the
//! first/last step and the lowest/highest loss written on the axes.

use anyhow::{Context, Result};
use std::path::Path;

const WIDTH: usize = 640;
const HEIGHT: usize = 360;
const MARGIN: usize = 40;
const WHITE: [u8; 3] = [255, 255, 255];
const AXIS: [u8; 3] = [90, 90, 90];
const RAW: [u8; 3] = [170, 200, 235];
const SMOOTH: [u8; 3] = [20, 70, 160];

/// Writes `losses` (one per step) as a line plot to `path` (atomically: a temporary file renamed).
pub fn write_loss_curve(losses: &[f32], path: &Path) -> Result<()> {
    let mut canvas = Canvas::new();
    canvas.axes();
    let finite: Vec<f32> = losses.iter().copied().filter(|l| l.is_finite()).collect();
    if finite.len() >= 2 {
        let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let span = (hi - lo).max(1e-6);
        let x = |i: usize| MARGIN as f32 + i as f32 * (WIDTH - 2 * MARGIN) as f32 / (finite.len() - 1) as f32;
        let y = |v: f32| (HEIGHT - MARGIN) as f32 - (v - lo) / span * (HEIGHT - 2 * MARGIN) as f32;
        canvas.polyline(finite.iter().enumerate().map(|(i, v)| (x(i), y(*v))), RAW);
        canvas.polyline(moving_average(&finite, 10).into_iter().enumerate().map(|(i, v)| (x(i), y(v))), SMOOTH);
        canvas.text(&format!("{hi:.2}"), 2, MARGIN - 3);
        canvas.text(&format!("{lo:.2}"), 2, HEIGHT - MARGIN - 3);
        canvas.text("1", MARGIN, HEIGHT - MARGIN + 8);
        let last = finite.len().to_string();
        canvas.text(&last, WIDTH - MARGIN - 4 * last.len(), HEIGHT - MARGIN + 8);
    }
    canvas.save(path)
}

/// The mean of the last `window` values at each step.
fn moving_average(values: &[f32], window: usize) -> Vec<f32> {
    (0..values.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(window);
            values[from..=i].iter().sum::<f32>() / (i + 1 - from) as f32
        })
        .collect()
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Canvas { pixels: WHITE.repeat(WIDTH * HEIGHT) }
    }

    fn set(&mut self, x: usize, y: usize, color: [u8; 3]) {
        if x < WIDTH && y < HEIGHT {
            let at = (y * WIDTH + x) * 3;
            self.pixels[at..at + 3].copy_from_slice(&color);
        }
    }

    fn axes(&mut self) {
        for x in MARGIN..WIDTH - MARGIN {
            self.set(x, HEIGHT - MARGIN, AXIS);
        }
        for y in MARGIN..=HEIGHT - MARGIN {
            self.set(MARGIN, y, AXIS);
        }
    }

    /// Straight segments between consecutive points, two pixels thick.
    fn polyline(&mut self, points: impl Iterator<Item = (f32, f32)>, color: [u8; 3]) {
        let points: Vec<(f32, f32)> = points.collect();
        for pair in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
            for s in 0..=steps {
                let t = s as f32 / steps as f32;
                let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
                self.set(x as usize, y as usize, color);
                self.set(x as usize, y as usize + 1, color);
            }
        }
    }

    /// Digits and `.` in a 3x5 pixel font, scaled by 1 (4 pixels per character).
    fn text(&mut self, text: &str, left: usize, top: usize) {
        for (i, ch) in text.chars().enumerate() {
            let Some(rows) = glyph(ch) else { continue };
            for (dy, row) in rows.iter().enumerate() {
                for dx in 0..3 {
                    if row & (0b100 >> dx) != 0 {
                        self.set(left + 4 * i + dx, top + dy, AXIS);
                    }
                }
            }
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("png.tmp");
        let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH as u32, HEIGHT as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("cannot start the PNG")?;
        writer.write_image_data(&self.pixels).context("cannot write the PNG")?;
        writer.finish().context("cannot finish the PNG")?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Five rows of three bits per character.
fn glyph(ch: char) -> Option<[u8; 5]> {
    Some(match ch {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_the_right_size() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("loss.png");
        let losses: Vec<f32> = (0..50).map(|i| 1.0 / (1.0 + i as f32)).collect();
        write_loss_curve(&losses, &path).expect("writes");
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).expect("open")));
        let reader = decoder.read_info().expect("a PNG");
        assert_eq!((reader.info().width, reader.info().height), (WIDTH as u32, HEIGHT as u32));
        assert!(!dir.path().join("loss.png.tmp").exists());
    }

    #[test]
    fn moving_average_smooths() {
        assert_eq!(moving_average(&[1.0, 3.0, 5.0], 2), vec![1.0, 2.0, 4.0]);
    }
}
