//! Uploads: an app is deployed as one tar archive holding `meshwa.toml` and the component files
//! it names, with paths relative to the archive's root (`meshwa deploy` builds it).
//!
//! The archive is untrusted input. Only regular files and directories are accepted; paths must
//! be plain relative paths (no `..`, no absolute paths, no links); there are at most
//! [`MAX_ENTRIES`] entries; the total is bounded by the upload limit the body was read under.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 256;

/// An upload, unpacked in memory.
pub struct Bundle {
    pub manifest: String,
    /// Path in the archive → contents, `meshwa.toml` included.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Why an upload is not a deployable archive: the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the upload is not a valid tar archive: {0}")]
    Malformed(String),
    #[error("archive entry {0:?}: only plain relative paths are allowed")]
    BadPath(String),
    #[error("archive entry {0:?}: only regular files and directories are allowed")]
    BadType(String),
    #[error("the archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("the archive has no meshwa.toml at its root")]
    NoManifest,
    #[error("meshwa.toml is not UTF-8")]
    ManifestEncoding,
}

/// Unpacks `bytes` (a tar archive).
pub fn unpack(bytes: &[u8]) -> Result<Bundle, ArchiveError> {
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    let mut files = BTreeMap::new();
    for (index, entry) in entries.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries);
        }
        let mut entry = entry.map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let raw_path = entry
            .path()
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?
            .into_owned();
        let shown = raw_path.display().to_string();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(ArchiveError::BadType(shown));
        }
        let path = clean_path(&raw_path).ok_or_else(|| ArchiveError::BadPath(shown.clone()))?;
        let mut contents = Vec::new();
        entry
            .read_to_end(&mut contents)
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        files.insert(path, contents);
    }
    let manifest = files.get("meshwa.toml").ok_or(ArchiveError::NoManifest)?;
    let manifest =
        String::from_utf8(manifest.clone()).map_err(|_| ArchiveError::ManifestEncoding)?;
    Ok(Bundle { manifest, files })
}

/// `a/b/c` from a path made only of normal components (and `.`), else `None`.
fn clean_path(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

/// Packs `files` (archive path → contents) into a tar archive: what `meshwa deploy` uploads.
pub fn pack(files: &BTreeMap<String, Vec<u8>>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, contents.as_slice())?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_entry(path: &str, kind: tar::EntryType, body: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        // Write the name bytes directly: `set_path` refuses `..`, a hostile client would not.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(kind);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, body).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn round_trip() {
        let files = BTreeMap::from([
            ("meshwa.toml".to_owned(), b"tenant = \"t\"".to_vec()),
            ("components/a.wasm".to_owned(), vec![0, 97, 115, 109]),
        ]);
        let bundle = unpack(&pack(&files).unwrap()).unwrap();
        assert_eq!(bundle.files, files);
        assert_eq!(bundle.manifest, "tenant = \"t\"");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let e = unpack(&raw_entry("../escape", tar::EntryType::Regular, b"x"))
            .err()
            .unwrap();
        assert!(matches!(e, ArchiveError::BadPath(_)), "{e}");
        let e = unpack(&raw_entry("/etc/passwd", tar::EntryType::Regular, b"x"))
            .err()
            .unwrap();
        assert!(matches!(e, ArchiveError::BadPath(_)), "{e}");
        let e = unpack(&raw_entry("link", tar::EntryType::Symlink, b""))
            .err()
            .unwrap();
        assert!(matches!(e, ArchiveError::BadType(_)), "{e}");
        let e = unpack(&raw_entry("other.txt", tar::EntryType::Regular, b"x"))
            .err()
            .unwrap();
        assert!(matches!(e, ArchiveError::NoManifest), "{e}");
        assert!(unpack(b"not a tar archive at all, just some bytes").is_err());
        let many: BTreeMap<String, Vec<u8>> = (0..=MAX_ENTRIES)
            .map(|i| (format!("f{i}"), vec![]))
            .collect();
        let e = unpack(&pack(&many).unwrap()).err().unwrap();
        assert!(matches!(e, ArchiveError::TooManyEntries), "{e}");
    }
}
