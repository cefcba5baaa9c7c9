//! Training checkpoints (`peft train --save-every K`) and resuming from one (`--resume DIR`).
//!
//! A checkpoint is a folder `OUTPUT/checkpoint-N` (N optimizer steps done), as transformers'
//! Trainer names them. It holds the adapter in the Python library's format (usable as it is
//! with `peft logits --adapter`), and what a resumed run needs to continue exactly where this
//! one was:
//! - `trainable.safetensors`: every trainable parameter (adapter and any head) by module path,
//!   in `f32`;
//! - `optimizer.bpk`: AdamW's moments and step counts (Burn's optimizer record);
//! - `trainer_state.json`: the steps done, the parameter ids the optimizer record refers to, the
//!   flags that must not change, the losses and evaluations so far.
//!
//! The data order is replayed from the seed (it is a function of the seed and the batches drawn),
//! and dropout draws from a generator reseeded every step from `(seed, step)` while checkpoints
//! are on, so a resumed run repeats the uninterrupted run's every draw. A checkpoint is written
//! into a temporary folder and renamed into place, so a run killed mid-save leaves the previous
//! checkpoints and no half-written one.

use anyhow::{Context, Result, bail};
use peft::burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use peft::burn::optim::ModuleOptimizer;
use peft::burn::tensor::{Tensor, TensorData};
use peft::io::tensors::{read_safetensors, write_safetensors};
use peft::{AdapterSites, PeftModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{EvalPoint, TrainOptions};

const STATE_FILE: &str = "trainer_state.json";
const TRAINABLE_FILE: &str = "trainable.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// What `trainer_state.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// `--seed`, `--batch-size` and `--gradient-accumulation-steps` of the run: a resumed run
    /// must use the same, or its data order would differ.
    pub seed: u64,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Batches per optimizer step.
    pub grad_accum: usize,
    /// The id of each trainable parameter (by module path), as the optimizer record names it.
    pub param_ids: BTreeMap<String, u64>,
    /// The training loss of every step so far.
    pub losses: Vec<f32>,
    /// The evaluations so far.
    pub evals: Vec<SavedEval>,
}

/// An [`EvalPoint`] as saved.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedEval {
    step: usize,
    loss: f32,
    accuracy: Option<f32>,
}

impl From<&EvalPoint> for SavedEval {
    fn from(e: &EvalPoint) -> Self {
        SavedEval { step: e.step, loss: e.loss, accuracy: e.accuracy }
    }
}

impl From<SavedEval> for EvalPoint {
    fn from(e: SavedEval) -> Self {
        EvalPoint { step: e.step, loss: e.loss, accuracy: e.accuracy }
    }
}

/// The folder of the checkpoint after `step` steps.
pub fn checkpoint_dir(output: &Path, step: usize) -> PathBuf {
    output.join(format!("checkpoint-{step}"))
}

/// The seed of step `step`'s dropout draws while checkpoints are on: a function of the run's
/// seed and the step alone (SplitMix64's finaliser, so nearby steps get unrelated streams).
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `OUTPUT/checkpoint-N` (see the module docs) through a temporary folder.
pub fn save<M: AdapterSites>(
    model: &PeftModel<M>,
    optimizer: &ModuleOptimizer,
    options: &TrainOptions,
    output: &Path,
    losses: &[f32],
    evals: &[EvalPoint],
) -> Result<PathBuf> {
    let step = losses.len();
    let dir = checkpoint_dir(output, step);
    let tmp = output.join(format!(".checkpoint-{step}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let write = || -> Result<()> {
        model.save_pretrained(&tmp)?;
        let mut trainable = Trainable::default();
        model.visit(&mut trainable);
        write_safetensors(&tmp.join(TRAINABLE_FILE), trainable.values)?;
        optimizer.save(tmp.join(OPTIMIZER_FILE)).map_err(|e| anyhow::anyhow!("cannot save the optimizer state: {e:?}"))?;
        let state = TrainerState {
            step,
            seed: options.seed,
            batch_size: options.batch_size,
            grad_accum: options.grad_accum,
            param_ids: trainable.ids,
            losses: losses.to_vec(),
            evals: evals.iter().map(SavedEval::from).collect(),
        };
        std::fs::write(tmp.join(STATE_FILE), serde_json::to_string_pretty(&state)?)?;
        sync_folder(&tmp)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&tmp, &dir)?;
        Ok(())
    };
    write().with_context(|| format!("cannot write the checkpoint {}", dir.display())).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    Ok(dir)
}

/// Flushes every file of `dir` to disk, so the rename publishes complete files.
fn sync_folder(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::File::open(entry?.path())?.sync_all()?;
    }
    Ok(())
}

/// A checkpoint read back for `--resume`.
pub struct Resume {
    /// Its folder.
    pub dir: PathBuf,
    /// Its state.
    pub state: TrainerState,
}

impl Resume {
    /// Reads the checkpoint at `path`: a `checkpoint-N` folder, or an output folder, for its
    /// latest checkpoint; checks that `options` keep the data order the checkpoint assumes.
    pub fn read(path: &Path, options: &TrainOptions) -> Result<Self> {
        let dir = if path.join(STATE_FILE).is_file() { path.to_path_buf() } else { latest(path)? };
        let text = std::fs::read_to_string(dir.join(STATE_FILE)).with_context(|| format!("cannot read {}", dir.join(STATE_FILE).display()))?;
        let state: TrainerState =
            serde_json::from_str(&text).with_context(|| format!("{} is not a checkpoint's state", dir.join(STATE_FILE).display()))?;
        let flags = [
            ("--seed", state.seed, options.seed),
            ("--batch-size", state.batch_size as u64, options.batch_size as u64),
            ("--gradient-accumulation-steps", state.grad_accum as u64, options.grad_accum as u64),
        ];
        for (flag, saved, given) in flags {
            if saved != given {
                bail!("the checkpoint {} was trained with {flag} {saved}, not {given}; resume with the same value", dir.display());
            }
        }
        if state.step > options.steps {
            bail!("the checkpoint {} is {} steps into the run, past --steps {}; give at least that many steps", dir.display(), state.step, options.steps);
        }
        Ok(Resume { dir, state })
    }

    /// `model` with the checkpoint's trainable values and parameter ids, and `optimizer` with
    /// its state.
    pub fn restore<M: AdapterSites>(&self, model: PeftModel<M>, optimizer: ModuleOptimizer) -> Result<(PeftModel<M>, ModuleOptimizer)> {
        let values = read_safetensors(&self.dir.join(TRAINABLE_FILE))?;
        let mut setter = Restore { path: Vec::new(), values, ids: &self.state.param_ids, error: None, set: 0 };
        let model = model.map(&mut setter);
        if let Some(error) = setter.error {
            bail!("the checkpoint {} does not fit this model: {error}; resume with the flags of the run that wrote it", self.dir.display());
        }
        if setter.set != self.state.param_ids.len() {
            bail!(
                "the checkpoint {} holds {} trainable tensors but this model has {} of them; resume with the flags of the run that wrote it",
                self.dir.display(),
                self.state.param_ids.len(),
                setter.set
            );
        }
        let optimizer = optimizer
            .load(self.dir.join(OPTIMIZER_FILE))
            .map_err(|e| anyhow::anyhow!("cannot read the optimizer state in {}: {e:?}", self.dir.display()))?;
        Ok((model, optimizer))
    }
}

/// The checkpoint with the most steps in an output folder.
fn latest(output: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(output).with_context(|| format!("cannot read {}", output.display()))?;
    let steps = entries.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        name.strip_prefix("checkpoint-")?.parse::<usize>().ok()
    });
    match steps.max() {
        Some(step) => Ok(checkpoint_dir(output, step)),
        None => bail!("{} holds no checkpoint-N folder; give a folder written by --save-every", output.display()),
    }
}

/// The trainable parameters' values and ids by module path.
#[derive(Default)]
struct Trainable {
    path: Vec<String>,
    values: Vec<(String, TensorData)>,
    ids: BTreeMap<String, u64>,
}

impl ModuleVisitor for Trainable {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            let key = self.path.join(".");
            self.ids.insert(key.clone(), param.id.val());
            self.values.push((key, value.detach().into_data()));
        }
    }
}

/// Sets the saved trainable parameters, with their saved ids.
struct Restore<'a> {
    path: Vec<String>,
    values: peft::io::tensors::TensorMap,
    ids: &'a BTreeMap<String, u64>,
    error: Option<String>,
    set: usize,
}

impl ModuleMapper for Restore<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.join(".");
        let (Some(data), Some(&id)) = (self.values.get(&key), self.ids.get(&key)) else { return param };
        if data.shape().as_slice() != param.lazy_shape().as_slice() {
            self.error.get_or_insert(format!("`{key}` is {:?} there and {:?} here", data.shape(), param.lazy_shape()));
            return param;
        }
        self.set += 1;
        let tensor = Tensor::<D>::from_data(data.clone(), &param.lazy_device());
        param.transform_for_load(tensor, ParamId::from(id))
    }
}
