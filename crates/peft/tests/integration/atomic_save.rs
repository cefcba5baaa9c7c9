//! Saves survive crashes: a child process saving adapters over each other is killed (SIGKILL)
//! at random points, many times; the folder always holds one whole adapter, old or new.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use burn::module::Module;
use burn::tensor::Device;
use common::device;
use peft::core::{AdaptedLinear, AdapterSites, SiteMut};
use peft::{InitLoraWeights, LoraConfig, PeftModel, get_peft_model};

/// Set in the child: the folder to save into, over and over.
const CHILD_DIR: &str = "PEFT_TEST_SAVE_LOOP_DIR";
/// Set in the child: a file it creates when its save loop starts. Kill delays count from there,
/// not from the spawn: starting a backend (wgpu's, say) can take longer than the delays, and a
/// kill before the first save tests nothing.
const CHILD_READY: &str = "PEFT_TEST_SAVE_LOOP_READY";

/// Eight 256-wide layers: adapters of about a megabyte, so a save takes long enough to be
/// interrupted.
#[derive(Module, Debug)]
struct Wide {
    layers: Vec<AdaptedLinear>,
}

impl AdapterSites for Wide {
    fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, SiteMut<'_>)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            f(&format!("layers.{i}.proj"), SiteMut::Linear(layer));
        }
    }
}

/// Adapter `version` (0 or 1): different ranks, so the config and the tensors tell them apart.
fn adapter(version: usize, device: &Device) -> PeftModel<Wide> {
    device.seed(11 + version as u64);
    let wide = Wide { layers: (0..8).map(|_| AdaptedLinear::new(256, 256, false, device)).collect() };
    let rank = [16, 24][version];
    let config = LoraConfig::new(rank).with_target_modules(["proj"]).with_init_lora_weights(InitLoraWeights::Random);
    get_peft_model(wide, config).expect("attaches")
}

/// Both files of a folder.
fn contents(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    (read("adapter_config.json"), read("adapter_model.safetensors"))
}

/// The child's loop: save version 0, 1, 0, ... into the folder until killed.
fn save_forever(dir: &Path) -> ! {
    let device = device();
    let models = [adapter(0, &device), adapter(1, &device)];
    if let Some(ready) = std::env::var_os(CHILD_READY) {
        std::fs::write(ready, b"").expect("ready marker");
    }
    for i in 0.. {
        models[i % 2].save_pretrained(dir).expect("saves");
    }
    unreachable!()
}

#[test]
fn a_save_killed_at_any_point_leaves_the_old_or_the_new_adapter() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        save_forever(Path::new(&dir));
    }
    let device = device();
    let root = tempfile::tempdir().expect("temp dir");
    let references: Vec<(Vec<u8>, Vec<u8>)> = (0..2)
        .map(|v| {
            let dir = root.path().join(format!("reference-{v}"));
            adapter(v, &device).save_pretrained(&dir).expect("saves");
            contents(&dir)
        })
        .collect();
    let target: PathBuf = root.path().join("adapter");
    adapter(0, &device).save_pretrained(&target).expect("first save");

    let (mut seen_new, mut mid_save) = (0, 0);
    // A fixed sequence of kill delays (a small LCG), so failures reproduce.
    let mut state = 0x2545_f491_u64;
    for round in 0..24 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = 20 + (state >> 33) % 400;
        let ready = root.path().join(format!("ready-{round}"));
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "atomic_save::a_save_killed_at_any_point_leaves_the_old_or_the_new_adapter", "--nocapture"])
            .env(CHILD_DIR, &target)
            .env(CHILD_READY, &ready)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("child starts");
        wait_until_ready(&mut child, &ready);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");

        let now = contents(&target);
        let which = references.iter().position(|r| *r == now);
        assert!(which.is_some(), "round {round} (killed {delay} ms into the save loop): the folder holds a mix or a partial adapter");
        seen_new += usize::from(which == Some(1));
        // A staging folder left beside the target means the kill landed inside a save.
        let staging = std::fs::read_dir(root.path()).expect("list").flatten().any(|e| e.file_name().to_string_lossy().contains("peft-staging"));
        mid_save += usize::from(staging);
        // And the loader agrees: the folder loads.
        let wide = Wide { layers: (0..8).map(|_| AdaptedLinear::new(256, 256, false, &device)).collect() };
        PeftModel::from_pretrained(wide, &target).expect("the folder loads after the kill");
    }
    eprintln!("24 kills: {mid_save} inside a save, the new adapter seen after {seen_new}");
    assert!(mid_save > 0, "no kill landed inside a save: the test did not test anything");
    assert!(seen_new > 0, "the child never completed a save");
}

/// Waits for the child's ready marker (at most two minutes), failing if the child exits first.
fn wait_until_ready(child: &mut std::process::Child, ready: &Path) {
    let start = std::time::Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the saving child exited ({status}) before its save loop started");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the saving child did not start its save loop within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
}
