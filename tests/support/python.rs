//! Python tools the tests drive (validators, linters, clients), installed on first use into a
//! virtual environment under the target directory, pinned by `tests/requirements.txt`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

const REQUIREMENTS: &str = include_str!("../requirements.txt");

/// The path of the executable `name` from the test environment, installing the environment
/// first if it is missing or its requirements changed. Safe to call from concurrent tests.
pub fn tool(name: &str) -> PathBuf {
    let venv = venv();
    let path = venv.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is not installed by tests/requirements.txt",
        path.display()
    );
    path
}

fn venv() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python");
    std::fs::create_dir_all(&root).expect("create the python tools directory");
    let lock = File::create(root.join(".lock")).expect("create the install lock");
    lock.lock().expect("take the install lock");

    let venv = root.join("venv");
    let stamp = venv.join("requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let requirements = root.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).expect("write requirements");
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements));
    std::fs::write(&stamp, REQUIREMENTS).expect("stamp the environment");
    venv
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (is python3 installed?)"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
