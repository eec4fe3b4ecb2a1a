//! The C bindings of the `meshwa:platform/http-function` world, generated with wit-bindgen's C
//! generator and committed under `sdk/c/generated`, so a C developer needs only clang and make.
//! A test keeps them in step with `wit/`.

use std::path::Path;

use anyhow::Context;
use wit_bindgen_core::wit_parser::Resolve;

/// Where the generated files live, relative to the repository root.
pub const DIR: &str = "sdk/c/generated";

/// The world C functions build against.
const WORLD: &str = "meshwa:platform/http-function";

/// The generated files, by name: `http_function.h`, `http_function.c` and
/// `http_function_component_type.o` (the world's type, which turns the linked module into a
/// component).
pub fn generate(root: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut resolve = Resolve::default();
    let (package, _sources) = resolve
        .push_dir(root.join("wit"))
        .context("cannot parse wit/")?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    Ok(files
        .iter()
        .map(|(name, bytes)| (name.to_owned(), bytes.to_vec()))
        .collect())
}

/// Regenerates the bindings into `dir`.
pub fn write(root: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in generate(root)? {
        std::fs::write(dir.join(&name), bytes).with_context(|| format!("cannot write {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_bindings_match_the_wit() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for (name, bytes) in generate(root).unwrap() {
            let committed = std::fs::read(root.join(DIR).join(&name))
                .unwrap_or_else(|e| panic!("{DIR}/{name}: {e}; run `cargo xtask c-bindings`"));
            assert!(
                committed == bytes,
                "{DIR}/{name} is stale: run `cargo xtask c-bindings` and commit the result"
            );
        }
    }
}
