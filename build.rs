//! Registers every cell model in `src/cell/models/` (each `NAME.rs` there
//! defines `pub static MODEL` and becomes module `NAME` of the registry), and
//! generates the C header from `src/bundle/ffi.rs` into OUT_DIR; a test checks
//! that the committed `include/excite.h` is that header.

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
    let mut dispatch = String::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_str().unwrap();
        mods.push_str(&format!(
            "#[path = {:?}]\npub mod {stem};\n",
            f.display().to_string()
        ));
        list.push_str(&format!("&{stem}::MODEL, "));
        dispatch.push_str(&format!(
            "    if let Some(m) = super::downcast_like(&{stem}::MODEL, any) {{\n        return Ok(f.call(m));\n    }}\n"
        ));
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let code = format!(
        "{mods}\npub static MODELS: &[&dyn crate::cell::Model] = &[{list}];\n\n\
         pub fn dispatch<F: super::WithModel>(any: &dyn std::any::Any, f: F) -> Result<F::Out, F> {{\n{dispatch}    Err(f)\n}}\n"
    );
    let out_dir = env::var("OUT_DIR").unwrap();
    fs::write(Path::new(&out_dir).join("models.rs"), code).unwrap();

    let root = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).to_path_buf();
    println!("cargo:rerun-if-changed=src/bundle/ffi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/bundle/ffi.rs"))
        .generate()
        .expect("cbindgen reads src/bundle/ffi.rs")
        .write_to_file(Path::new(&out_dir).join("excite.h"));
}
