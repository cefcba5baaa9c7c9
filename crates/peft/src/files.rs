//! `save_pretrained`, `from_pretrained` and `load_adapter` with the Hub's adapter folders.

use peft_core::{AdapterSites, Result};
use peft_io::adapter::{AdapterFolder, DEFAULT_ADAPTER, adapter_dir, read_adapter_folder, site_tensors, write_adapter_folder_with_card};
use peft_io::card::{CARD_FILE, TrainingSummary, may_write_card, model_card};
use std::path::Path;

use crate::bias::export_biases;
use peft_core::attach::SiteMethod;

use crate::model::PeftModel;

impl<M: AdapterSites> PeftModel<M> {
    /// Writes every adapter as the Python library does: `default` in `dir` itself
    /// (`adapter_config.json` + `adapter_model.safetensors`), each other adapter in `dir/<name>/`,
    /// and a `README.md` model card in `dir` (base model, method, task; see [`peft_io::card`])
    /// unless `dir` holds a `README.md` this library did not write.
    ///
    /// Each file is written to a temporary file and renamed into place.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let names = self.adapter_names();
        self.save_selected(dir.as_ref(), &names.iter().map(String::as_str).collect::<Vec<_>>(), None, None)
    }

    /// Like [`PeftModel::save_pretrained`], with what the trainer knows (training data,
    /// hyper-parameters, final metrics) in the model card.
    pub fn save_pretrained_with_summary(&self, dir: impl AsRef<Path>, training: &TrainingSummary) -> Result<()> {
        let names = self.adapter_names();
        self.save_selected(dir.as_ref(), &names.iter().map(String::as_str).collect::<Vec<_>>(), Some(training), None)
    }

    /// Writes only the named adapters (`selected_adapters` in Python), and the model card.
    pub fn save_adapters(&self, dir: impl AsRef<Path>, names: &[&str]) -> Result<()> {
        self.save_selected(dir.as_ref(), names, None, None)
    }

    /// Like [`PeftModel::save_pretrained`], with every adapter converted to plain LoRA for the
    /// original base model: what the Python library writes with
    /// `save_pretrained(path_initial_model_for_weight_conversion=initial)`.
    ///
    /// A PiSSA or OLoRA adapter trains on a base whose weights it changed (`W - s B0 A0`); to share
    /// it, save it once before training (`save_pretrained(initial)`), train, then call this: the
    /// folder holds `s (B A - B0 A0)` as a LoRA adapter of rank `2 r` (see the `convert` module),
    /// which loads onto the unchanged base model here and in Python and combines with other
    /// adapters. Other tensors of the adapter (biases, `modules_to_save` heads) are kept as they
    /// are (the Python library drops them).
    ///
    /// # Errors
    /// Those of [`PeftModel::save_pretrained`]; reading `initial`; [`peft_core::Error::MissingTensor`]
    /// or [`peft_core::Error::ShapeMismatch`] when `initial` is not this adapter before training;
    /// [`peft_core::Error::Unsupported`] for adapters that are not LoRA, DoRA, and rsLoRA with
    /// rank or alpha patterns. Nothing is written on error.
    pub fn save_pretrained_as_lora(&self, dir: impl AsRef<Path>, initial: impl AsRef<Path>) -> Result<()> {
        let initial = read_adapter_folder(initial.as_ref())?;
        let names = self.adapter_names();
        self.save_selected(dir.as_ref(), &names.iter().map(String::as_str).collect::<Vec<_>>(), None, Some(&initial))
    }

    /// [`PeftModel::save_pretrained_as_lora`] with what the trainer knows in the model card.
    pub fn save_pretrained_as_lora_with_summary(&self, dir: impl AsRef<Path>, initial: impl AsRef<Path>, training: &TrainingSummary) -> Result<()> {
        let initial = read_adapter_folder(initial.as_ref())?;
        let names = self.adapter_names();
        self.save_selected(dir.as_ref(), &names.iter().map(String::as_str).collect::<Vec<_>>(), Some(training), Some(&initial))
    }

    fn save_selected(&self, dir: &Path, names: &[&str], training: Option<&TrainingSummary>, initial: Option<&AdapterFolder>) -> Result<()> {
        // The card sits in `dir` itself, as in Python; it describes the adapter saved there
        // (`default`), else the first one named.
        let card_for = |config: &peft_core::PeftConfig| -> Result<Option<String>> {
            Ok(may_write_card(dir)?.then(|| model_card(config, training)))
        };
        // Everything is computed before the first folder is written.
        let mut folders = Vec::with_capacity(names.len());
        for name in names {
            let entry = self.entry(name)?;
            let mut tensors = site_tensors(&self.base_model, name);
            tensors.extend(export_biases(&self.base_model, name, entry));
            let mut model_level = self.model_adapters.get(name).map(|a| a.export()).unwrap_or_default();
            if !model_level.is_empty() {
                // A prompt-learning adapter's head copies, keyed as the Python library writes them.
                let head = std::mem::take(&mut tensors);
                model_level.extend(head.into_iter().map(|(k, v)| (format!("{}{k}", crate::model::PROMPT_HEAD_PREFIX), v)));
            }
            let mut config = entry.config.clone();
            if let Some(initial) = initial {
                config = crate::convert::plain_lora_config(&config)?;
                tensors = crate::convert::stack_with_initial(tensors, &initial.tensors, &initial.dir)?;
            }
            config.set_inference_mode(true);
            let card = if *name == DEFAULT_ADAPTER { card_for(&config)? } else { None };
            folders.push((adapter_dir(dir, name), config, tensors, model_level, card));
        }
        for (folder, config, tensors, model_level, card) in folders {
            write_adapter_folder_with_card(&folder, &config, tensors, model_level, card.as_deref())?;
        }
        if !names.contains(&DEFAULT_ADAPTER)
            && let Some(first) = names.first()
            && let Some(card) = card_for(&self.entry(first)?.config)?
        {
            std::fs::create_dir_all(dir).map_err(|e| peft_core::Error::io("cannot create folder", dir, e))?;
            peft_io::tensors::write_atomic(&dir.join(CARD_FILE), card.as_bytes())?;
        }
        Ok(())
    }

    /// Loads the adapter folder `dir` (written here or by the Python library) onto `model` as
    /// adapter `default`, frozen for inference unless its config says otherwise.
    ///
    /// Every shape is checked before anything is attached; on error the model is dropped
    /// unchanged with the error (use [`PeftModel::load_adapter`] on a `PeftModel` to keep it).
    pub fn from_pretrained(model: M, dir: impl AsRef<Path>) -> Result<Self> {
        let mut peft = PeftModel::new(model);
        peft.load_adapter(dir, DEFAULT_ADAPTER)?;
        Ok(peft)
    }

    /// Like [`PeftModel::from_pretrained`] for an adapter of a method of your own (see
    /// [`PeftModel::add_adapter_with_method`]).
    pub fn from_pretrained_with_method(model: M, dir: impl AsRef<Path>, method: &dyn SiteMethod) -> Result<Self> {
        let mut peft = PeftModel::new(model);
        peft.load_adapter_with_method(dir, DEFAULT_ADAPTER, method)?;
        Ok(peft)
    }

    /// Like [`PeftModel::load_adapter`] for an adapter of a method of your own.
    pub fn load_adapter_with_method(&mut self, dir: impl AsRef<Path>, name: &str, method: &dyn SiteMethod) -> Result<()> {
        let mut folder = read_adapter_folder(dir.as_ref())?;
        crate::legacy::upgrade_keys(&mut folder.tensors, &self.base_model);
        self.attach(name, folder.config, Some(&folder.tensors), Some(method))?;
        self.activate_loaded(name)
    }

    /// Loads another adapter folder under `name`, leaving the active set as it is (the first
    /// adapter loaded becomes active). On error nothing is attached.
    pub fn load_adapter(&mut self, dir: impl AsRef<Path>, name: &str) -> Result<()> {
        let mut folder = read_adapter_folder(dir.as_ref())?;
        crate::legacy::upgrade_keys(&mut folder.tensors, &self.base_model);
        self.attach(name, folder.config, Some(&folder.tensors), None)?;
        self.activate_loaded(name)
    }

    /// The first adapter loaded becomes active; later ones leave the active set as it is.
    fn activate_loaded(&mut self, name: &str) -> Result<()> {
        if self.registry.active.is_empty() {
            self.set_adapter(name)?;
        } else {
            let active: Vec<String> = self.registry.active.clone();
            let refs: Vec<&str> = active.iter().map(String::as_str).collect();
            self.set_adapters(&refs)?;
        }
        Ok(())
    }
}
