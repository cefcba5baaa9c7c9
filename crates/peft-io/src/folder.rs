//! Writing a folder's files all at once: a reader (or a process killed mid-save) sees either
//! every old file or every new one, never the new weights beside the old config.
//!
//! Renaming one file is atomic, but an adapter is two files. So the new files go into a staging
//! folder beside the target (holding hard links to the target's other files, so nothing else in
//! it is lost), and the staging folder then takes the target's place in one step: on Linux an
//! atomic exchange of the two names (`renameat2(RENAME_EXCHANGE)`), elsewhere two renames with a
//! short window in which the folder is missing (never mixed). Staging folders left by a killed
//! process are removed by the next save.

use std::path::{Path, PathBuf};

use peft_core::{Error, Result};

use crate::tensors::write_atomic;

/// Writes `files` (name, bytes) into folder `dir` so that the folder switches from its old
/// content to the new one in a single step; files of `dir` not among `files` stay.
///
/// Falls back to writing file by file (each still atomic) where the folder cannot be swapped:
/// `dir` is the working directory or one of its ancestors, or has no name (`/`).
///
/// # Errors
/// [`Error::Io`] naming the path that could not be written; the old folder is then unchanged.
pub fn write_files_atomically(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let Some(target) = swappable(dir) else {
        for (name, bytes) in files {
            write_atomic(&dir.join(name), bytes)?;
        }
        return Ok(());
    };
    let parent = target.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).map_err(|e| Error::io("cannot create folder", &parent, e))?;
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    remove_stale_staging(&parent, &name);
    let staging = parent.join(format!(".{name}{STAGING}{}-{}", std::process::id(), unique()));
    let result = stage(&target, &staging, files).and_then(|()| swap_in(&staging, &target));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Marks a staging folder, followed by the writing process's id.
const STAGING: &str = ".peft-staging-";

/// The absolute path of `dir` when it can be swapped as a whole.
fn swappable(dir: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    // `a/b/.` and `a/b/..` name folders whose last component is not their name.
    let target = if dir.exists() { absolute.canonicalize().ok()? } else { absolute };
    target.file_name()?;
    if let Ok(cwd) = std::env::current_dir().and_then(|c| c.canonicalize()) {
        // Swapping the working directory would leave this process inside the old, deleted one.
        if cwd.starts_with(&target) {
            return None;
        }
    }
    Some(target)
}

/// Fills `staging` with hard links to `target`'s other entries and the new files, synced.
fn stage(target: &Path, staging: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    std::fs::create_dir(staging).map_err(|e| Error::io("cannot create folder", staging, e))?;
    if target.is_dir() {
        let replaced: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        link_tree(target, staging, &replaced).map_err(|e| Error::io("cannot link the other files of", target, e))?;
    }
    for (name, bytes) in files {
        let path = staging.join(name);
        let written = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(&path)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        written.map_err(|e| Error::io("cannot write", &path, e))?;
    }
    sync_dir(staging);
    Ok(())
}

/// Recreates `from`'s tree in `to` with hard links (copies where linking fails), skipping the
/// top-level entries in `skip`.
fn link_tree(from: &Path, to: &Path, skip: &[&str]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == std::ffi::OsStr::new(s)) {
            continue;
        }
        let (source, dest) = (entry.path(), to.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir(&dest)?;
            link_tree(&source, &dest, &[])?;
        } else if kind.is_symlink() {
            copy_symlink(&source, &dest)?;
        } else if std::fs::hard_link(&source, &dest).is_err() {
            std::fs::copy(&source, &dest)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn copy_symlink(source: &Path, dest: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(std::fs::read_link(source)?, dest)
}

#[cfg(not(unix))]
fn copy_symlink(source: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::copy(source, dest).map(|_| ())
}

/// Puts `staging` in `target`'s place and removes the old content.
fn swap_in(staging: &Path, target: &Path) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    if !target.exists() {
        std::fs::rename(staging, target).map_err(|e| Error::io("cannot write", target, e))?;
        sync_dir(parent);
        return Ok(());
    }
    if exchange(staging, target).is_err() {
        // No atomic exchange here: move the old folder aside first, so a crash leaves either
        // the old folder aside or the new one in place, never a mix.
        let aside = staging.with_file_name(format!("{}-old", staging.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
        std::fs::rename(target, &aside).map_err(|e| Error::io("cannot replace", target, e))?;
        if let Err(e) = std::fs::rename(staging, target) {
            let _ = std::fs::rename(&aside, target);
            return Err(Error::io("cannot replace", target, e));
        }
        let _ = std::fs::remove_dir_all(&aside);
        sync_dir(parent);
        return Ok(());
    }
    sync_dir(parent);
    // `staging` now names the old content.
    let _ = std::fs::remove_dir_all(staging);
    Ok(())
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no atomic exchange of folders on this system"))
}

/// Makes a rename durable (a no-op where folders cannot be opened, as on Windows).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A number that differs between saves of one process.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Removes staging folders for `name` left by processes that no longer run (killed mid-save).
fn remove_stale_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}{STAGING}");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_runs(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` still runs (on Linux; elsewhere assumed, so nothing is removed).
fn process_runs(pid: u32) -> bool {
    if cfg!(target_os = "linux") { Path::new(&format!("/proc/{pid}")).exists() } else { true }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("readable")
    }

    #[test]
    fn replaces_the_named_files_and_keeps_the_others() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("adapter");
        write_files_atomically(&dir, &[("a.json", b"old a"), ("b.bin", b"old b")]).expect("first save");
        std::fs::write(dir.join("notes.txt"), "mine").expect("user file");
        std::fs::create_dir(dir.join("other")).expect("subfolder");
        std::fs::write(dir.join("other/x"), "nested").expect("nested file");
        write_files_atomically(&dir, &[("a.json", b"new a"), ("b.bin", b"new b")]).expect("second save");
        assert_eq!(read(&dir.join("a.json")), "new a");
        assert_eq!(read(&dir.join("b.bin")), "new b");
        assert_eq!(read(&dir.join("notes.txt")), "mine");
        assert_eq!(read(&dir.join("other/x")), "nested");
        // Nothing but the folder itself is left beside it.
        let names: Vec<_> = std::fs::read_dir(root.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("adapter")]);
    }

    #[test]
    fn stale_staging_folders_of_dead_processes_are_removed() {
        let root = tempfile::tempdir().expect("temp dir");
        // A pid above Linux's maximum (2^22) never runs.
        let stale = root.path().join(format!(".adapter{STAGING}4999999-0"));
        std::fs::create_dir(&stale).expect("stale folder");
        write_files_atomically(&root.path().join("adapter"), &[("a", b"1")]).expect("save");
        if cfg!(target_os = "linux") {
            assert!(!stale.exists());
        }
    }

    #[test]
    fn the_working_directory_is_written_file_by_file() {
        let cwd = std::env::current_dir().expect("cwd");
        assert!(swappable(&cwd).is_none());
        assert!(swappable(Path::new(".")).is_none());
        assert!(swappable(&cwd.join("some-new-folder")).is_some());
    }
}
