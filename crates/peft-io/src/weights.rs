//! Base-model weights from transformers' safetensors into a model built for adapters.
//!
//! A parameter's file key is its transformers name: the module path of an adapter site as the
//! site lists it ([`AdapterSites::visit_sites`]) plus `weight` / `bias`, and for every other
//! parameter its Burn module path (fields joined with `.`) with `base_layer` segments dropped.
//! Adapter parameters (`...q_proj.adapters.<name>...`) are never loaded here.
//!
//! ```no_run
//! use peft_io::weights::{LoadOptions, load_into, read_model_tensors};
//! # fn demo<M: peft_core::AdapterSites>(model: M) -> peft_core::Result<M> {
//! let tensors = read_model_tensors(std::path::Path::new("models/SmolLM2-135M"))?;
//! let options = LoadOptions { prefixes: vec![], optional: vec!["lm_head.weight".into()] };
//! let model = load_into(model, &tensors, &options)?;
//! # Ok(model)
//! # }
//! ```

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use std::cell::Cell;
use peft_core::{AdapterSites, Error, Result, SiteMut};
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::stored::{LazyTensors, TensorValue, read_lazy_safetensors};

/// The single-file weights name transformers writes.
pub const MODEL_FILE: &str = "model.safetensors";

/// The index transformers writes next to sharded weights.
pub const MODEL_INDEX_FILE: &str = "model.safetensors.index.json";

/// How [`load_into`] matches file keys to parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Key prefixes to try when a key is missing, both added and stripped (`["bert."]` lets a
    /// `BertModel` read a `BertForSequenceClassification` checkpoint and the other way round).
    pub prefixes: Vec<String>,
    /// Keys allowed to be absent from the file (`lm_head.weight` when tied to the embedding);
    /// those parameters keep their value and the caller fills them.
    pub optional: Vec<String>,
}

thread_local! {
    /// The float type [`load_into`] creates base parameters in on this thread (`None`: f32).
    static LOAD_DTYPE: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// Runs `load` with every base parameter that [`load_into`] sets on this thread created in
/// `dtype` (f16 or bf16 on a backend that computes in them): each tensor is converted as it is
/// read, so a model loads at half the memory without ever existing in f32 (adapters attached
/// later stay f32, see `peft_core::adapted::precision`). Every model loader goes through
/// [`load_into`], so this works for any `from_pretrained`:
///
/// ```no_run
/// use burn::tensor::FloatDType;
/// use peft_io::weights::{LoadOptions, load_into, read_model_tensors, with_load_dtype};
/// # fn demo<M: peft_core::AdapterSites>(model: M, dir: &std::path::Path) -> peft_core::Result<M> {
/// let tensors = read_model_tensors(dir)?;
/// let model = with_load_dtype(FloatDType::BF16, || load_into(model, &tensors, &LoadOptions::default()))?;
/// # Ok(model)
/// # }
/// ```
///
/// The previous setting is restored when `load` returns (or unwinds).
pub fn with_load_dtype<T>(dtype: FloatDType, load: impl FnOnce() -> T) -> T {
    struct Restore(Option<FloatDType>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOAD_DTYPE.set(self.0);
        }
    }
    let _restore = Restore(LOAD_DTYPE.replace(Some(dtype)));
    load()
}

/// The tensors of `dir/model.safetensors`, or of every shard listed in
/// `dir/model.safetensors.index.json`, from the headers only: each tensor is read from disk when
/// [`load_into`] sets its parameter (see [`crate::stored`]).
///
/// Fails with [`Error::Io`] naming `dir/model.safetensors` when neither file exists, and with
/// [`Error::Json`] / [`Error::Format`] when the index or a shard's header is malformed.
pub fn read_model_tensors(dir: &Path) -> Result<LazyTensors> {
    let single = dir.join(MODEL_FILE);
    if single.is_file() {
        return read_lazy_safetensors(&single);
    }
    let index = dir.join(MODEL_INDEX_FILE);
    if !index.is_file() {
        let source = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {MODEL_FILE} nor {MODEL_INDEX_FILE} is in the folder"),
        );
        return Err(Error::io("cannot read", single, source));
    }
    let mut out = LazyTensors::new();
    for shard in shard_files(&index)? {
        out.extend(read_lazy_safetensors(&dir.join(shard))?);
    }
    Ok(out)
}

/// The tensor names of a model folder's checkpoint (`model.safetensors` or every shard of the
/// index), read from the headers only.
///
/// # Errors
/// As [`read_model_tensors`].
pub fn checkpoint_tensor_names(dir: &Path) -> Result<Vec<String>> {
    let single = dir.join(MODEL_FILE);
    let files = if single.is_file() {
        vec![single]
    } else {
        shard_files(&dir.join(MODEL_INDEX_FILE))?.into_iter().map(|f| dir.join(f)).collect()
    };
    let mut names = Vec::new();
    for file in files {
        names.extend(crate::tensors::describe_safetensors(&file)?.into_iter().map(|t| t.name));
    }
    Ok(names)
}

/// The distinct shard file names of an index, in first-mention order.
fn shard_files(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: indexmap::IndexMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io("cannot read", index, e))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|source| Error::Json { path: index.into(), source })?;
    let mut files: Vec<String> = Vec::new();
    for file in parsed.weight_map.into_values() {
        // Shards live next to the index; a path that leaves the folder is not a shard name.
        if file.contains('/') || file.contains('\\') || file == ".." {
            let message = format!("shard `{file}` is not a file name in the index's folder");
            return Err(Error::Format { path: index.into(), format: "safetensors index", message });
        }
        if !files.contains(&file) {
            files.push(file);
        }
    }
    Ok(files)
}

/// Like [`load_into`] from a folder: reads its weights with [`read_model_tensors`] and names the
/// file read in [`Error::MissingTensor`].
pub fn load_from_dir<M: AdapterSites>(model: M, dir: &Path, options: &LoadOptions) -> Result<M> {
    let tensors = read_model_tensors(dir)?;
    let file = if dir.join(MODEL_FILE).is_file() { dir.join(MODEL_FILE) } else { dir.join(MODEL_INDEX_FILE) };
    load_into(model, &tensors, options).map_err(|e| match e {
        Error::MissingTensor { key, fix, .. } => Error::MissingTensor { key, file, fix },
        other => other,
    })
}

/// Sets every float parameter of `model` from `tensors` by transformers' key names and returns
/// the model.
///
/// Linear weights are transposed from PyTorch's `[d_output, d_input]` to Burn's
/// `[d_input, d_output]`, except at sites with `fan_in_fan_out` (GPT-2's `Conv1D` already stores
/// `[d_input, d_output]`). Every shape is checked before any parameter is set, so an error leaves
/// nothing half loaded; parameter ids, devices and `require_grad` are kept. Keys of `tensors`
/// that match no parameter are ignored (listed once at debug level).
///
/// # Errors
/// - [`Error::MissingTensor`] for a parameter whose key (tried with `options.prefixes`) is absent
///   and not in `options.optional`;
/// - [`Error::ShapeMismatch`] naming the module path and both shapes, in the file's layout.
pub fn load_into<M: AdapterSites, V: TensorValue>(model: M, tensors: &IndexMap<String, V>, options: &LoadOptions) -> Result<M> {
    let sites = SiteParams::collect(&model);
    let mut params = ParamCollector::default();
    model.visit(&mut params);

    // Every key and shape is checked before any value is read, so a wrong file costs no reading.
    let mut plan: HashMap<ParamId, Planned> = HashMap::new();
    let mut used: HashSet<&str> = HashSet::new();
    for param in params.found {
        if sites.adapter_ids.contains(&param.id) {
            continue;
        }
        let (module, name, transpose) = match sites.keys.get(&param.id) {
            Some(site) => (site.module.clone(), site.name.clone(), site.transpose),
            None => split_key(&file_key(&param.path)),
        };
        let key = join(&module, &name);
        let Some(found_key) = lookup(tensors, &key, &options.prefixes) else {
            if options.optional.contains(&key) {
                continue;
            }
            return Err(missing(key, &options.prefixes));
        };
        let mut expected = param.shape.clone();
        if transpose {
            expected.reverse();
        }
        let actual = tensors[found_key].value_shape().to_vec();
        if actual != expected {
            return Err(Error::ShapeMismatch { path: module, tensor: found_key.to_string(), expected, actual });
        }
        used.insert(found_key);
        plan.insert(param.id, Planned { key: found_key.to_string(), transpose: transpose && actual.len() == 2 });
    }

    let unused: Vec<&str> = tensors.keys().map(String::as_str).filter(|k| !used.contains(k)).collect();
    if !unused.is_empty() {
        log::debug!("{} tensors match no parameter of the model and were ignored: {}", unused.len(), unused.join(", "));
    }
    let mut setter = Setter { tensors, plan, error: None };
    let model = model.map(&mut setter);
    match setter.error {
        Some(error) => Err(error),
        None => Ok(model),
    }
}

/// Where a parameter's value comes from.
struct Planned {
    key: String,
    /// Whether the stored `[rows, cols]` is PyTorch's linear layout, to transpose to Burn's.
    transpose: bool,
}

fn missing(key: String, prefixes: &[String]) -> Error {
    let tried = if prefixes.is_empty() {
        String::new()
    } else {
        format!(" (also tried with prefixes {prefixes:?} added and removed)")
    };
    let fix = format!(
        "the folder does not hold weights for this architecture{tried}; check that config.json's \
         model_type matches the weights, or list the key in LoadOptions::optional if the caller fills it"
    );
    Error::MissingTensor { key, file: PathBuf::from("the given tensors"), fix }
}

/// Looks `key` up as is, then with each prefix added and, where it starts with one, removed;
/// gives the key as stored.
fn lookup<'a, V>(tensors: &'a IndexMap<String, V>, key: &str, prefixes: &[String]) -> Option<&'a str> {
    let get = |k: &str| tensors.get_key_value(k).map(|(k, _)| k.as_str());
    get(key).or_else(|| {
        prefixes.iter().find_map(|p| get(&format!("{p}{key}")).or_else(|| key.strip_prefix(p.as_str()).and_then(get)))
    })
}

/// Whether a module level is an enum variant (`AutoModel::Llama`), from the container type Burn
/// reports (`"Enum:AutoModel"`): Burn enters it like a field, but transformers' names have no
/// such level.
pub fn is_variant(container_type: &str) -> bool {
    container_type.starts_with("Enum:")
}

/// Every float parameter of `module` as `(file key, shape)`, in visiting order, without
/// initialising lazy ones (file keys as [`load_into`] matches them outside adapter sites).
pub fn parameter_keys<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    let mut params = ParamCollector::default();
    module.visit(&mut params);
    params.found.into_iter().map(|p| (file_key(&p.path), p.shape)).collect()
}

/// The file key of a Burn module path: `base_layer` segments dropped.
pub(crate) fn file_key(path: &[String]) -> String {
    path.iter().map(String::as_str).filter(|s| *s != "base_layer").collect::<Vec<_>>().join(".")
}

/// `(module, name)` of a key, for an error's module path and tensor name.
pub(crate) fn split_key(key: &str) -> (String, String, bool) {
    match key.rsplit_once('.') {
        Some((module, name)) => (module.to_string(), name.to_string(), false),
        None => (String::new(), key.to_string(), false),
    }
}

pub(crate) fn join(module: &str, name: &str) -> String {
    if module.is_empty() { name.to_string() } else { format!("{module}.{name}") }
}

/// What the sites say about their parameters: file keys, and which ids belong to adapters.
pub(crate) struct SiteParams {
    pub(crate) keys: HashMap<ParamId, SiteKey>,
    pub(crate) adapter_ids: HashSet<ParamId>,
}

pub(crate) struct SiteKey {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) transpose: bool,
}

impl SiteParams {
    pub(crate) fn collect<M: AdapterSites>(model: &M) -> Self {
        let mut keys = HashMap::new();
        let mut ids = IdCollector::default();
        let mut add = |module: &str, name: &str, id: ParamId, transpose: bool| {
            keys.insert(id, SiteKey { module: module.to_string(), name: name.to_string(), transpose });
        };
        model.visit_sites(&mut |path, site| match site {
            SiteMut::Linear(l) => {
                // PyTorch's nn.Linear stores [d_output, d_input]; Conv1D (fan_in_fan_out) Burn's layout.
                add(path, "weight", l.base_layer.weight.id, !l.fan_in_fan_out);
                if let Some(b) = &l.base_layer.bias {
                    add(path, "bias", b.id, false);
                }
                l.adapters.visit(&mut ids);
            }
            SiteMut::Embedding(e) => {
                add(path, "weight", e.base_layer.weight.id, false);
                e.adapters.visit(&mut ids);
            }
            SiteMut::Conv1d(c) => {
                add(path, "weight", c.base_layer.weight.id, false);
                if let Some(b) = &c.base_layer.bias {
                    add(path, "bias", b.id, false);
                }
                c.adapters.visit(&mut ids);
            }
            SiteMut::Conv2d(c) => {
                add(path, "weight", c.base_layer.weight.id, false);
                if let Some(b) = &c.base_layer.bias {
                    add(path, "bias", b.id, false);
                }
                c.adapters.visit(&mut ids);
            }
            SiteMut::BatchNorm2d(n) => {
                // Only the affine parameters: the running statistics are buffers the model's
                // loader fills (they are not parameters, so no visitor sees them).
                add(path, "weight", n.base_layer.weight.id, false);
                add(path, "bias", n.base_layer.bias.id, false);
                n.adapters.visit(&mut ids);
            }
            // No base weights of its own: the attention's projections are sites themselves.
            SiteMut::Attention(a) => a.adapters.visit(&mut ids),
        });
        SiteParams { keys, adapter_ids: ids.0 }
    }
}

#[derive(Default)]
struct IdCollector(HashSet<ParamId>);

impl ModuleVisitor for IdCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.insert(param.id);
    }
}

pub(crate) struct FoundParam {
    pub(crate) path: Vec<String>,
    pub(crate) id: ParamId,
    pub(crate) shape: Vec<usize>,
}

/// Every float parameter with its module path and shape, without initialising lazy ones.
#[derive(Default)]
pub(crate) struct ParamCollector {
    pub(crate) path: Vec<String>,
    pub(crate) found: Vec<FoundParam>,
}

impl ModuleVisitor for ParamCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if !is_variant(container_type) {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        if !is_variant(container_type) {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.found.push(FoundParam { path: self.path.clone(), id: param.id, shape: param.lazy_shape().to_vec() });
    }
}

/// Replaces the parameters with a planned value, reading each when it is set; the first error
/// stops further reading and is returned by [`load_into`] (which then drops the model).
struct Setter<'a, V> {
    tensors: &'a IndexMap<String, V>,
    plan: HashMap<ParamId, Planned>,
    error: Option<Error>,
}

impl<V: TensorValue> Setter<'_, V> {
    /// The planned value of a parameter in Burn's layout, in the load dtype (f32 unless one is
    /// set), converted and transposed as it is read so that no second whole copy is made.
    fn value(&self, planned: &Planned, dtype: Option<FloatDType>) -> Result<TensorData> {
        let data = self.tensors[planned.key.as_str()].value_as(dtype.unwrap_or(FloatDType::F32), planned.transpose)?;
        // A float parameter stored as integers in the file takes them as floats.
        Ok(if data.dtype().is_float() { data } else { data.convert::<f32>() })
    }
}

impl<V: TensorValue> ModuleMapper for Setter<'_, V> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let Some(planned) = self.plan.remove(&param.id) else { return param };
        match self.value(&planned, LOAD_DTYPE.get()) {
            // Keeps the id, the device and `require_grad` as the parameter had them.
            Ok(data) => {
                let device = param.lazy_device();
                let tensor = match LOAD_DTYPE.get() {
                    Some(dtype) => Tensor::<D>::from_data(data, (&device, DType::from(dtype))),
                    None => Tensor::<D>::from_data(data, &device),
                };
                let id = param.id;
                param.transform_for_load(tensor, id)
            }
            Err(error) => {
                self.error = Some(error);
                param
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensors::{TensorMap, write_safetensors};
    use burn::module::Module;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;
    use peft_core::adapted::SavedLinear;
    use peft_core::{AdaptedEmbedding, AdaptedLinear};

    #[derive(Module, Debug)]
    struct Norm {
        weight: Param<Tensor<1>>,
    }

    /// `embed` [5, 3], `layers.{0,1}.proj` 3 -> 2 with bias, `conv` (fan_in_fan_out) 3 -> 4, `norm`.
    #[derive(Module, Debug)]
    struct Tiny {
        embed: AdaptedEmbedding,
        layers: Vec<Layer>,
        conv: AdaptedLinear,
        norm: Norm,
    }

    #[derive(Module, Debug)]
    struct Layer {
        proj: AdaptedLinear,
    }

    impl AdapterSites for Tiny {
        fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
            f("embed", SiteMut::Embedding(&mut self.embed));
            for (i, l) in self.layers.iter_mut().enumerate() {
                f(&format!("layers.{i}.proj"), SiteMut::Linear(&mut l.proj));
            }
            f("conv", SiteMut::Linear(&mut self.conv));
        }
    }

    fn device() -> Device {
        peft_core::backend::default_device().expect("PEFT_DEVICE names a backend compiled in")
    }

    fn tiny(device: &Device) -> Tiny {
        Tiny {
            embed: AdaptedEmbedding::new(5, 3, device),
            layers: (0..2).map(|_| Layer { proj: AdaptedLinear::new(3, 2, true, device) }).collect(),
            conv: AdaptedLinear::new(3, 4, false, device).with_fan_in_fan_out(true),
            norm: Norm { weight: Param::from_tensor(Tensor::ones([3], device)) },
        }
    }

    fn seq(n: usize, start: f32) -> Vec<f32> {
        (0..n).map(|i| start + i as f32).collect()
    }

    /// The tensors transformers would write for `Tiny`, PyTorch layouts.
    fn file(prefix: &str) -> Vec<(String, TensorData)> {
        let mut out = vec![
            (format!("{prefix}embed.weight"), TensorData::new(seq(15, 0.0), [5, 3])),
            (format!("{prefix}conv.weight"), TensorData::new(seq(12, 100.0), [3, 4])),
            (format!("{prefix}norm.weight"), TensorData::new(vec![2f32, 3.0, 4.0], [3])),
        ];
        for i in 0..2 {
            out.push((format!("{prefix}layers.{i}.proj.weight"), TensorData::new(seq(6, 10.0 * i as f32), [2, 3])));
            out.push((format!("{prefix}layers.{i}.proj.bias"), TensorData::new(vec![7f32, 8.0], [2])));
        }
        out
    }

    fn map(prefix: &str) -> TensorMap {
        file(prefix).into_iter().collect()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("succeeds")
    }

    #[test]
    fn loads_by_key_transposing_linear_weights_only() {
        let device = device();
        let model = tiny(&device);
        let id = model.layers[1].proj.base_layer.weight.id;
        let model = load_into(model, &map(""), &LoadOptions::default()).expect("succeeds");
        // PyTorch [[10, 11, 12], [13, 14, 15]] is Burn [[10, 13], [11, 14], [12, 15]].
        let w = model.layers[1].proj.base_layer.weight.val();
        assert_eq!(w.dims(), [3, 2]);
        assert_eq!(values(w), vec![10.0, 13.0, 11.0, 14.0, 12.0, 15.0]);
        assert_eq!(model.layers[1].proj.base_layer.weight.id, id, "parameter ids are kept");
        let bias = model.layers[0].proj.base_layer.bias.as_ref().expect("succeeds").val();
        assert_eq!(values(bias), vec![7.0, 8.0]);
        assert_eq!(values(model.conv.base_layer.weight.val()), seq(12, 100.0), "fan_in_fan_out is not transposed");
        assert_eq!(values(model.embed.base_layer.weight.val()), seq(15, 0.0));
        assert_eq!(values(model.norm.weight.val()), vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn prefixes_are_added_and_stripped() {
        let options = LoadOptions { prefixes: vec!["bert.".into()], optional: vec![] };
        let model = load_into(tiny(&device()), &map("bert."), &options).expect("succeeds");
        assert_eq!(values(model.norm.weight.val()), vec![2.0, 3.0, 4.0]);
        // A model whose keys carry the prefix reads a file without it.
        #[derive(Module, Debug)]
        struct Wrapped {
            bert: Tiny,
        }
        impl AdapterSites for Wrapped {
            fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
                self.bert.visit_sites_mut(&mut |p, s| f(&format!("bert.{p}"), s));
            }
        }
        let model = load_into(Wrapped { bert: tiny(&device()) }, &map(""), &options).expect("succeeds");
        assert_eq!(values(model.bert.embed.base_layer.weight.val()), seq(15, 0.0));
    }

    #[test]
    fn wrong_shape_is_a_typed_error_naming_the_module() {
        let mut tensors = map("");
        tensors.insert("layers.1.proj.weight".into(), TensorData::new(seq(6, 0.0), [3, 2]));
        let err = load_into(tiny(&device()), &tensors, &LoadOptions::default()).expect_err("fails");
        match err {
            Error::ShapeMismatch { path, expected, actual, .. } => {
                assert_eq!(path, "layers.1.proj");
                assert_eq!((expected, actual), (vec![2, 3], vec![3, 2]));
            }
            other => panic!("expected ShapeMismatch, got {other}"),
        }
    }

    #[test]
    fn missing_tensor_names_the_key_unless_optional() {
        let mut tensors = map("");
        tensors.shift_remove("norm.weight");
        let err = load_into(tiny(&device()), &tensors, &LoadOptions::default()).expect_err("fails");
        assert!(matches!(&err, Error::MissingTensor { key, .. } if key == "norm.weight"), "{err}");
        let options = LoadOptions { prefixes: vec![], optional: vec!["norm.weight".into()] };
        let model = load_into(tiny(&device()), &tensors, &options).expect("succeeds");
        assert_eq!(values(model.norm.weight.val()), vec![1.0; 3], "an optional parameter keeps its value");
    }

    #[test]
    fn adapters_are_left_alone_and_extra_keys_ignored() {
        let device = device();
        let mut model = tiny(&device);
        let copy = LinearConfig::new(3, 2).init(&device);
        let before = values(copy.weight.val());
        model.layers[0].proj.adapters.insert("default", peft_core::adapted::Erased::new(SavedLinear { copy })).expect("succeeds");
        let mut tensors = map("");
        tensors.insert("layers.0.proj.adapters.default.copy.weight".into(), TensorData::new(seq(6, 0.0), [2, 3]));
        tensors.insert("unused.weight".into(), TensorData::new(vec![1f32], [1]));
        let model = load_into(model, &tensors, &LoadOptions::default()).expect("succeeds");
        let mut after = Vec::new();
        model.layers[0].proj.adapters.visit(&mut Grab(&mut after));
        assert_eq!(after, before);
    }

    struct Grab<'a>(&'a mut Vec<f32>);
    impl ModuleVisitor for Grab<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 2 {
                self.0.extend(values(param.val()));
            }
        }
    }

    #[test]
    fn a_load_dtype_creates_the_parameters_in_it_as_they_are_read() {
        let device = device();
        let bf16 = with_load_dtype(burn::tensor::FloatDType::BF16, || load_into(tiny(&device), &map(""), &LoadOptions::default()))
            .expect("loads");
        let f32 = load_into(tiny(&device), &map(""), &LoadOptions::default()).expect("loads");
        let weight = bf16.layers[1].proj.base_layer.weight.val();
        assert_eq!(weight.dtype(), DType::BF16);
        assert_eq!(bf16.norm.weight.val().dtype(), DType::BF16);
        assert_eq!(f32.layers[1].proj.base_layer.weight.val().dtype(), DType::F32, "the setting ends with the call");
        let rounded = f32.layers[1].proj.base_layer.weight.val().cast(FloatDType::BF16);
        assert_eq!(values(weight.cast(FloatDType::F32)), values(rounded.cast(FloatDType::F32)));
    }

    #[test]
    fn a_bf16_file_loads_into_bf16_parameters_without_conversion() {
        use safetensors::{Dtype, tensor::TensorView};
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.safetensors");
        let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = file("")
            .into_iter()
            .map(|(key, data)| {
                let shape = data.shape().to_vec();
                let bf16 = data.convert::<half::bf16>();
                (key, bf16.as_bytes().to_vec(), shape)
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(key, bytes, shape)| (key.clone(), TensorView::new(Dtype::BF16, shape.clone(), bytes).expect("a view")))
            .collect();
        safetensors::serialize_to_file(views, None, &path).expect("writes");

        let device = device();
        let lazy = crate::stored::read_lazy_safetensors(&path).expect("opens");
        let loaded = with_load_dtype(burn::tensor::FloatDType::BF16, || load_into(tiny(&device), &lazy, &LoadOptions::default()))
            .expect("loads");
        // The reference: the f32 values loaded, then rounded to bf16 (the file holds that rounding).
        let reference = load_into(tiny(&device), &map(""), &LoadOptions::default()).expect("loads");
        let pairs = [
            (loaded.layers[1].proj.base_layer.weight.val(), reference.layers[1].proj.base_layer.weight.val()),
            (loaded.conv.base_layer.weight.val(), reference.conv.base_layer.weight.val()),
            (loaded.embed.base_layer.weight.val(), reference.embed.base_layer.weight.val()),
        ];
        for (got, want) in pairs {
            assert_eq!(got.dtype(), DType::BF16);
            assert_eq!(got.into_data(), want.cast(burn::tensor::FloatDType::BF16).into_data(), "transposed as in f32, bit for bit");
        }
    }

    #[test]
    fn require_grad_is_kept() {
        let device = device().autodiff();
        let model = tiny(&device);
        let model = Tiny { norm: model.norm.clone().no_grad(), ..model };
        let model = load_into(model, &map(""), &LoadOptions::default()).expect("succeeds");
        assert!(model.embed.base_layer.weight.val().is_require_grad());
        assert!(!model.norm.weight.val().is_require_grad());
    }

    #[test]
    fn a_checkpoint_cut_after_its_header_was_read_fails_the_load_with_an_io_error() {
        let dir = tempfile::tempdir().expect("succeeds");
        let path = dir.path().join(MODEL_FILE);
        write_safetensors(&path, file("")).expect("succeeds");
        let tensors = read_model_tensors(dir.path()).expect("succeeds");
        // Headers only were read: the values come from disk as each parameter is set.
        let bytes = std::fs::read(&path).expect("succeeds");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("succeeds");
        let err = load_into(tiny(&device()), &tensors, &LoadOptions::default()).expect_err("fails");
        assert!(matches!(&err, Error::Io { path: p, .. } if *p == path), "{err}");
    }

    #[test]
    fn reads_single_and_sharded_folders() {
        let dir = tempfile::tempdir().expect("succeeds");
        let err = read_model_tensors(dir.path()).expect_err("fails");
        assert!(matches!(&err, Error::Io { path, .. } if path.ends_with(MODEL_FILE)), "{err}");

        let mut all = file("");
        let second = all.split_off(2);
        write_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), all.clone()).expect("succeeds");
        write_safetensors(&dir.path().join("model-00002-of-00002.safetensors"), second.clone()).expect("succeeds");
        let mut weight_map = serde_json::Map::new();
        for (k, _) in &all {
            weight_map.insert(k.clone(), "model-00001-of-00002.safetensors".into());
        }
        for (k, _) in &second {
            weight_map.insert(k.clone(), "model-00002-of-00002.safetensors".into());
        }
        let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
        std::fs::write(dir.path().join(MODEL_INDEX_FILE), index.to_string()).expect("succeeds");
        let tensors = read_model_tensors(dir.path()).expect("succeeds");
        assert_eq!(tensors.len(), 7);
        let model = load_from_dir(tiny(&device()), dir.path(), &LoadOptions::default()).expect("succeeds");
        assert_eq!(values(model.norm.weight.val()), vec![2.0, 3.0, 4.0]);

        std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("succeeds");
        assert!(matches!(read_model_tensors(dir.path()), Err(Error::Io { .. })));
    }
}
