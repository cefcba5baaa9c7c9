//! What the guides share: command-line arguments, a seeded random source, reading tensors back,
//! and the training progress bar.

use anyhow::{Context, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use peft::burn::tensor::Tensor;
use std::path::PathBuf;

/// The environment variable that turns on smoke mode like `--smoke` does (any value but `0`).
pub const SMOKE_ENV: &str = "PEFT_EXAMPLES_SMOKE";

/// `fixtures/` at the workspace root, where the default models and adapters live.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// `target/` at the workspace root, where the binaries save their adapters.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// A guide's command line: `[DIR] [--smoke]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The model (or adapter) folder, when one is given.
    pub dir: Option<PathBuf>,
    /// A tiny, fast run (`--smoke` or [`SMOKE_ENV`]).
    pub smoke: bool,
}

impl Args {
    /// Reads the process's arguments and [`SMOKE_ENV`].
    ///
    /// # Errors
    /// An unknown `--flag`, or more than one folder.
    pub fn from_env() -> Result<Self> {
        let env_smoke = std::env::var(SMOKE_ENV).is_ok_and(|v| v != "0");
        let mut args = Self::parse(std::env::args().skip(1))?;
        args.smoke |= env_smoke;
        Ok(args)
    }

    /// Parses arguments (without the program name).
    ///
    /// # Errors
    /// An unknown `--flag`, or more than one folder.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut out = Args::default();
        for arg in args {
            match arg.as_str() {
                "--smoke" => out.smoke = true,
                flag if flag.starts_with("--") => return Err(anyhow!("unknown option `{flag}` (usage: [DIR] [--smoke])")),
                _ if out.dir.is_some() => return Err(anyhow!("more than one folder given: `{arg}` (usage: [DIR] [--smoke])")),
                _ => out.dir = Some(PathBuf::from(arg)),
            }
        }
        Ok(out)
    }
}

/// A small seeded random source (SplitMix64), so the synthetic data sets are the same on
/// every run and machine without a `rand` dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// A tensor's values as `f32`, row-major.
///
/// # Errors
/// When the values cannot be read back as floats.
pub fn floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec().map_err(|e| anyhow!("reading a tensor back: {e:?}"))
}

/// The one value of a `[1]` tensor (a loss).
///
/// # Errors
/// When the tensor is empty or cannot be read back.
pub fn scalar(t: Tensor<1>) -> Result<f32> {
    floats(t)?.first().copied().context("an empty tensor")
}

/// The largest absolute difference between two tensors of one shape.
///
/// # Errors
/// When the shapes differ or the values cannot be read back.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Result<f32> {
    let (sa, sb) = (a.dims(), b.dims());
    anyhow::ensure!(sa == sb, "comparing outputs of shapes {sa:?} and {sb:?}");
    scalar((a - b).abs().max().reshape([1]))
}

/// A bar for `steps` training steps showing the loss; hidden when `show` is false (tests).
///
/// # Errors
/// Never in practice (the template is fixed).
pub fn progress_bar(steps: usize, show: bool) -> Result<ProgressBar> {
    let bar = if show { ProgressBar::new(steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} loss {msg}")?);
    Ok(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_take_one_folder_and_the_smoke_flag() {
        let args = Args::parse(["dir".to_string(), "--smoke".to_string()]).expect("valid");
        assert_eq!(args, Args { dir: Some("dir".into()), smoke: true });
        assert!(Args::parse(["--fast".to_string()]).is_err());
        assert!(Args::parse(["a".to_string(), "b".to_string()]).is_err());
    }

    #[test]
    fn rng_is_seeded_and_uniform_in_range() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..100).map(|_| r.uniform()).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        assert!(draw(3).iter().all(|x| (0.0..1.0).contains(x)));
        let mut r = Rng::new(4);
        assert!((0..100).all(|_| r.below(3) < 3));
    }
}
