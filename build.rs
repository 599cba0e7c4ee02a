//! Registers every cell model in `src/cell/models/`: each `NAME.rs` there
//! defines `pub static MODEL`, and becomes module `NAME` of the registry.

use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("src/cell/models");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("src/cell/models exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut mods = String::new();
    let mut list = String::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        mods.push_str(&format!(
            "#[path = {:?}]\npub mod {stem};\n",
            f.display().to_string()
        ));
        list.push_str(&format!("&{stem}::MODEL, "));
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let code = format!("{mods}\npub static MODELS: &[&dyn crate::cell::Model] = &[{list}];\n");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("models.rs");
    fs::write(out, code).unwrap();
}
