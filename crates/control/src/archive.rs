//! Uploads: an app is deployed as one tar archive holding its manifest (`meshwa.toml`, or a Spin
//! app's `spin.toml`) and the files it names, with paths relative to the archive's root
//! (`meshwa deploy` builds it).
//!
//! The archive is untrusted input. Only regular files and directories are accepted; paths must
//! be plain relative paths (no `..`, no absolute paths, no links), each at most once and never
//! both a file and a directory; there are at most [`MAX_ENTRIES`] entries, one manifest, and it
//! is at most [`MAX_MANIFEST`] bytes. The archive is read as a stream and each file handed to a
//! writer as it comes, so an upload is never held in memory whole; its files add up to no more
//! than the archive that holds them (sparse entries, which could, are refused).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 256;

/// Largest manifest an archive may hold (it is read into memory to be checked).
pub const MAX_MANIFEST: u64 = 1024 * 1024;

/// Which manifest an upload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `meshwa.toml`.
    Meshwa,
    /// A Spin app's `spin.toml`.
    Spin,
}

impl ManifestKind {
    pub fn file_name(self) -> &'static str {
        match self {
            ManifestKind::Meshwa => meshwa_manifest::MESHWA_MANIFEST,
            ManifestKind::Spin => meshwa_manifest::SPIN_MANIFEST,
        }
    }

    fn of(path: &str) -> Option<ManifestKind> {
        [ManifestKind::Meshwa, ManifestKind::Spin]
            .into_iter()
            .find(|kind| kind.file_name() == path)
    }
}

/// What an unpacked upload holds: its manifest, and the size of every file written.
pub struct Unpacked {
    pub manifest: String,
    pub kind: ManifestKind,
    /// Path in the archive → its size in bytes, the manifest included.
    pub files: BTreeMap<String, u64>,
}

impl Unpacked {
    /// Bytes of every file together.
    pub fn bytes(&self) -> u64 {
        self.files.values().sum()
    }
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
    #[error(
        "archive entry {0:?}: the path is in the archive twice, or both as a file and as a directory"
    )]
    Conflict(String),
    #[error("the archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("the archive has no meshwa.toml (or a Spin app's spin.toml) at its root")]
    NoManifest,
    #[error("the archive has both a meshwa.toml and a spin.toml: an app has one manifest")]
    TwoManifests,
    #[error("the manifest is larger than {MAX_MANIFEST} bytes")]
    ManifestTooLarge,
    #[error("the manifest is not UTF-8")]
    ManifestEncoding,
}

/// Why unpacking stopped: the archive (the client's fault) or the writer (`E`, its own).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError<E> {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Write(E),
}

/// Reads the tar archive `reader` as a stream, checks every entry, and hands each file to
/// `write` (its path in the archive, its contents; returns the bytes written).
pub fn unpack<E>(
    reader: impl Read,
    mut write: impl FnMut(&str, &mut dyn Read) -> Result<u64, E>,
) -> Result<Unpacked, UnpackError<E>> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    let mut files = BTreeMap::new();
    let mut manifest = None;
    for (index, entry) in entries.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries.into());
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
            return Err(ArchiveError::BadType(shown).into());
        }
        let path = clean_path(&raw_path).ok_or_else(|| ArchiveError::BadPath(shown.clone()))?;
        if conflicts(&files, &path) {
            return Err(ArchiveError::Conflict(shown).into());
        }
        let size = if let Some(kind) = ManifestKind::of(&path) {
            if manifest.is_some() {
                return Err(ArchiveError::TwoManifests.into());
            }
            let mut text = Vec::new();
            (&mut entry)
                .take(MAX_MANIFEST + 1)
                .read_to_end(&mut text)
                .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
            if text.len() as u64 > MAX_MANIFEST {
                return Err(ArchiveError::ManifestTooLarge.into());
            }
            let size = write(&path, &mut text.as_slice()).map_err(UnpackError::Write)?;
            let text = String::from_utf8(text).map_err(|_| ArchiveError::ManifestEncoding)?;
            manifest = Some((text, kind));
            size
        } else {
            // A failed read is the archive's fault (cut short, say), a failed write the writer's.
            let mut read_error = None;
            let mut watched = Watched {
                inner: &mut entry,
                error: &mut read_error,
            };
            match (write(&path, &mut watched), read_error) {
                (_, Some(error)) => return Err(ArchiveError::Malformed(error).into()),
                (Err(error), None) => return Err(UnpackError::Write(error)),
                (Ok(size), None) => size,
            }
        };
        files.insert(path, size);
    }
    let (manifest, kind) = manifest.ok_or(ArchiveError::NoManifest)?;
    Ok(Unpacked {
        manifest,
        kind,
        files,
    })
}

/// A reader that remembers its first error.
struct Watched<'a, R> {
    inner: R,
    error: &'a mut Option<String>,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|error| {
            self.error.get_or_insert_with(|| error.to_string());
        })
    }
}

/// Whether `path` is already in `files`, lies under one of them, or has some of them under it.
fn conflicts(files: &BTreeMap<String, u64>, path: &str) -> bool {
    let under_a_file = path
        .match_indices('/')
        .any(|(at, _)| files.contains_key(&path[..at]));
    let dir = format!("{path}/");
    let over_a_file = files
        .range(dir.clone()..)
        .next()
        .is_some_and(|(name, _)| name.starts_with(&dir));
    files.contains_key(path) || under_a_file || over_a_file
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

    type Files = BTreeMap<String, Vec<u8>>;

    /// Unpacks into memory: the manifest, and path → contents.
    fn unpack_in_memory(bytes: &[u8]) -> Result<(String, Files), UnpackError<std::io::Error>> {
        let mut files = BTreeMap::new();
        let unpacked = unpack(bytes, |path, reader| {
            let mut contents = Vec::new();
            reader.read_to_end(&mut contents)?;
            let size = contents.len() as u64;
            files.insert(path.to_owned(), contents);
            Ok(size)
        })?;
        let sizes: BTreeMap<String, u64> = files
            .iter()
            .map(|(path, contents)| (path.clone(), contents.len() as u64))
            .collect();
        assert_eq!(unpacked.files, sizes);
        Ok((unpacked.manifest, files))
    }

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
        let (manifest, unpacked) = unpack_in_memory(&pack(&files).unwrap()).unwrap();
        assert_eq!(unpacked, files);
        assert_eq!(manifest, "tenant = \"t\"");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let refusal = |bytes: &[u8]| match unpack_in_memory(bytes) {
            Err(UnpackError::Archive(e)) => e,
            Err(UnpackError::Write(e)) => panic!("the writer failed: {e}"),
            Ok(_) => panic!("unpacked"),
        };
        let e = refusal(&raw_entry("../escape", tar::EntryType::Regular, b"x"));
        assert!(matches!(e, ArchiveError::BadPath(_)), "{e}");
        let e = refusal(&raw_entry("/etc/passwd", tar::EntryType::Regular, b"x"));
        assert!(matches!(e, ArchiveError::BadPath(_)), "{e}");
        let e = refusal(&raw_entry("link", tar::EntryType::Symlink, b""));
        assert!(matches!(e, ArchiveError::BadType(_)), "{e}");
        // A sparse entry could unpack to more than the archive holds (this header lacks its
        // real size, which tar refuses to read; one with it is refused for its type).
        let e = refusal(&raw_entry("sparse", tar::EntryType::GNUSparse, b""));
        assert!(
            matches!(e, ArchiveError::BadType(_) | ArchiveError::Malformed(_)),
            "{e}"
        );
        let e = refusal(&raw_entry("other.txt", tar::EntryType::Regular, b"x"));
        assert!(matches!(e, ArchiveError::NoManifest), "{e}");
        let e = refusal(b"not a tar archive at all, just some bytes");
        assert!(matches!(e, ArchiveError::Malformed(_)), "{e}");
        let many: BTreeMap<String, Vec<u8>> = (0..=MAX_ENTRIES)
            .map(|i| (format!("f{i}"), vec![]))
            .collect();
        let e = refusal(&pack(&many).unwrap());
        assert!(matches!(e, ArchiveError::TooManyEntries), "{e}");
        let huge = BTreeMap::from([(
            "meshwa.toml".to_owned(),
            vec![b'#'; MAX_MANIFEST as usize + 1],
        )]);
        let e = refusal(&pack(&huge).unwrap());
        assert!(matches!(e, ArchiveError::ManifestTooLarge), "{e}");
        // An entry cut short.
        let mut short = raw_entry("meshwa.toml", tar::EntryType::Regular, &[b'#'; 600]);
        short.truncate(512 + 100);
        assert!(matches!(refusal(&short), ArchiveError::Malformed(_)));
        let mut short = raw_entry("big.wasm", tar::EntryType::Regular, &[0; 600]);
        short.truncate(512 + 100);
        assert!(matches!(refusal(&short), ArchiveError::Malformed(_)));
        // A path both as a file and as a directory, either way round, and a path twice.
        for (first, second) in [("a", "a/b"), ("a/b", "a"), ("a", "a")] {
            let mut archive = raw_entry(first, tar::EntryType::Regular, b"x");
            archive.truncate(archive.len() - 1024); // drop the end-of-archive blocks
            archive.extend(raw_entry(second, tar::EntryType::Regular, b"y"));
            let e = refusal(&archive);
            assert!(
                matches!(e, ArchiveError::Conflict(_)),
                "{first}, {second}: {e}"
            );
        }
    }

    /// The fuzz target `archive`, run over its corpus as a plain test: never a panic, never an
    /// unsafe path handed to the writer.
    #[test]
    fn the_fuzz_corpus_unpacks_without_panicking() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/archive");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            inputs += 1;
            let _ = unpack(bytes.as_slice(), |name, contents| {
                assert!(
                    !name.starts_with('/') && !name.split('/').any(|p| p == ".." || p.is_empty()),
                    "unsafe path {name:?}"
                );
                std::io::copy(contents, &mut std::io::sink())
            });
        }
        assert!(inputs > 0, "{} is empty", dir.display());
    }
}
