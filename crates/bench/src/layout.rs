//! What instantiating a component has to do, read from its binary: the core modules and core
//! instances, the data its memory image holds and whether wasmtime can map that image
//! copy-on-write, and the table entries written afresh for every instance. `meshwa-bench
//! languages` prints it beside the measured breakdown, so that a cost can be traced to its cause.

use anyhow::Context;
use wasmparser::{
    DataKind, ElementItems, ElementKind, Encoding, Operator, Parser, Payload, TypeRef,
};

/// wasmtime's default `memory_guaranteed_dense_image_size`: an image this small is always built,
/// however sparse its data.
const DENSE_IMAGE_ALWAYS_ALLOWED: u64 = 16 << 20;

/// One core module of a component.
#[derive(Debug, Default)]
struct Module {
    defines_memory: bool,
    data_bytes: u64,
    data_segments: u64,
    /// Segments whose offset is not a constant (dynamic linking's `__memory_base`).
    placed_at_run_time: u64,
    lowest: Option<u64>,
    highest: u64,
    /// Function references written into tables by active element segments at every
    /// instantiation: all but those at a constant offset of a table the module defines, which
    /// wasmtime sets lazily.
    table_entries_eager: u64,
}

/// A component's layout, summed over its core modules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub core_modules: u64,
    /// `instantiate` entries: core instances made per component instance (shims included).
    pub core_instances: u64,
    /// Bytes of data segments in modules that define their memory.
    pub image_data_bytes: u64,
    pub image_segments: u64,
    /// From the lowest to the highest byte the segments initialize.
    pub image_extent_bytes: u64,
    /// Whether every memory with data passes wasmtime's rule for a static (copy-on-write) image:
    /// constant offsets, and an extent under twice the data or under 16 MiB.
    pub copy_on_write: bool,
    pub table_entries_per_instance: u64,
}

fn constant(expr: &wasmparser::ConstExpr<'_>) -> Option<u64> {
    let mut reader = expr.get_operators_reader();
    let first = reader.read().ok()?;
    let offset = match first {
        Operator::I32Const { value } => u64::from(value.cast_unsigned()),
        Operator::I64Const { value } => value.cast_unsigned(),
        _ => return None,
    };
    matches!(reader.read().ok()?, Operator::End).then_some(offset)
}

/// Reads the layout of the component (or core module) `bytes`.
pub fn read(bytes: &[u8]) -> anyhow::Result<Layout> {
    let mut layout = Layout::default();
    let mut modules: Vec<Module> = Vec::new();
    // Tables a module defines itself (index space: imports first); only those are set lazily.
    let mut imported_tables = 0u32;
    let mut depth_is_module: Vec<bool> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("reading the component")? {
            Payload::Version { encoding, .. } => {
                let module = encoding == Encoding::Module;
                depth_is_module.push(module);
                if module {
                    modules.push(Module::default());
                    imported_tables = 0;
                }
            }
            Payload::End(_) => {
                depth_is_module.pop();
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    if matches!(
                        instance.context("core instance")?,
                        wasmparser::Instance::Instantiate { .. }
                    ) {
                        layout.core_instances += 1;
                    }
                }
            }
            Payload::ImportSection(reader) if depth_is_module.last() == Some(&true) => {
                for import in reader.into_imports() {
                    if matches!(import.context("import")?.ty, TypeRef::Table(_)) {
                        imported_tables += 1;
                    }
                }
            }
            Payload::MemorySection(reader) => {
                if let Some(module) = modules.last_mut() {
                    module.defines_memory |= reader.count() > 0;
                }
            }
            Payload::DataSection(reader) => {
                let Some(module) = modules.last_mut() else {
                    continue;
                };
                for data in reader {
                    let data = data.context("data segment")?;
                    let DataKind::Active { offset_expr, .. } = data.kind else {
                        continue;
                    };
                    let len = data.data.len() as u64;
                    module.data_segments += 1;
                    module.data_bytes += len;
                    match constant(&offset_expr) {
                        Some(start) => {
                            module.lowest = Some(module.lowest.map_or(start, |l| l.min(start)));
                            module.highest = module.highest.max(start.saturating_add(len));
                        }
                        None => module.placed_at_run_time += 1,
                    }
                }
            }
            Payload::ElementSection(reader) => {
                let Some(module) = modules.last_mut() else {
                    continue;
                };
                for element in reader {
                    let element = element.context("element segment")?;
                    let ElementKind::Active {
                        table_index,
                        offset_expr,
                    } = element.kind
                    else {
                        continue;
                    };
                    let entries = match element.items {
                        ElementItems::Functions(items) => u64::from(items.count()),
                        ElementItems::Expressions(_, items) => u64::from(items.count()),
                    };
                    let own_table = table_index.unwrap_or(0) >= imported_tables;
                    if !own_table || constant(&offset_expr).is_none() {
                        module.table_entries_eager += entries;
                    }
                }
            }
            _ => {}
        }
    }
    layout.core_modules = modules.len() as u64;
    layout.copy_on_write = true;
    for module in &modules {
        layout.table_entries_per_instance += module.table_entries_eager;
        if module.data_bytes == 0 {
            continue;
        }
        layout.image_data_bytes += module.data_bytes;
        layout.image_segments += module.data_segments;
        let extent = module
            .lowest
            .map_or(0, |lowest| module.highest.saturating_sub(lowest));
        layout.image_extent_bytes += extent;
        let dense =
            extent < module.data_bytes.saturating_mul(2) || extent < DENSE_IMAGE_ALWAYS_ALLOWED;
        if !module.defines_memory || module.placed_at_run_time > 0 || !dense {
            layout.copy_on_write = false;
        }
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).expect("valid text")
    }

    #[test]
    fn constant_segments_of_an_own_memory_make_a_copy_on_write_image() {
        let layout = read(&wat(
            r#"(module (memory 2) (data (i32.const 16) "abcd") (data (i32.const 100) "ef"))"#,
        ))
        .expect("layout");
        assert_eq!(layout.core_modules, 1);
        assert_eq!(layout.image_data_bytes, 6);
        assert_eq!(layout.image_segments, 2);
        assert_eq!(layout.image_extent_bytes, 86);
        assert!(layout.copy_on_write);
    }

    #[test]
    fn segments_placed_at_run_time_or_in_an_imported_memory_are_copied() {
        let placed = read(&wat(
            r#"(module (import "env" "base" (global i32)) (memory 1) (data (global.get 0) "x"))"#,
        ))
        .expect("layout");
        assert!(!placed.copy_on_write);
        let imported = read(&wat(
            r#"(module (import "env" "memory" (memory 1)) (data (i32.const 0) "x"))"#,
        ))
        .expect("layout");
        assert!(!imported.copy_on_write);
    }

    #[test]
    fn entries_into_an_imported_table_or_at_a_run_time_offset_are_written_per_instance() {
        let layout = read(&wat(r#"(module
                (import "env" "t" (table 4 funcref))
                (import "env" "base" (global i32))
                (table $own 8 funcref)
                (func $f)
                (elem (table 0) (i32.const 0) func $f $f)
                (elem (table $own) (global.get 0) func $f)
                (elem (table $own) (i32.const 2) func $f $f $f))"#))
        .expect("layout");
        assert_eq!(layout.table_entries_per_instance, 3);
    }
}
