//! Secret config values, supplied by the operator in a file given to `meshwa serve`, never by the
//! manifest (which a tenant writes and may publish).
//!
//! ```toml
//! # secrets.toml: [<tenant>.<app>] <name> = "<value>"
//! [acme.guestbook]
//! api-key = "s3cr3t"
//! ```
//!
//! Values never appear in errors, in `Debug` output or in logs: errors name the file, the app and
//! the key only, and guest log lines have them replaced by `[redacted]`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use meshwa_manifest::{Manifest, Name};

use crate::LoadError;

/// Largest secrets file read.
const MAX_SECRETS_FILE: u64 = 1024 * 1024;

/// Secret values by tenant, app and name.
#[derive(Default, Clone)]
pub struct Secrets {
    source: Option<PathBuf>,
    values: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("source", &self.source)
            .field("apps", &self.values.len())
            .finish_non_exhaustive()
    }
}

/// Why a secrets file was refused. The operator's fault; never contains a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{}: cannot read secrets file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: secrets file is larger than {MAX_SECRETS_FILE} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl Secrets {
    /// Reads a secrets file.
    pub fn load(path: &Path) -> Result<Secrets, SecretsError> {
        let read_error = |source| SecretsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_error)?;
        if meta.len() > MAX_SECRETS_FILE {
            return Err(SecretsError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(path = %path.display(), "the secrets file is readable by every user of this machine; chmod o-r it");
            }
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Secrets::parse(&text, path)
    }

    /// Parses secrets-file text; `source` names it in errors.
    pub fn parse(text: &str, source: &Path) -> Result<Secrets, SecretsError> {
        let invalid = |message: String| SecretsError::Invalid {
            path: source.to_path_buf(),
            message,
        };
        // toml's own error would quote the offending line, which may hold a secret: say where
        // only.
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| format!(" at byte {}", span.start))
                .unwrap_or_default();
            invalid(format!("not valid TOML{at}"))
        })?;
        let mut values = BTreeMap::new();
        for (tenant, apps) in table {
            let shape = || {
                invalid(format!(
                    "expected [<tenant>.<app>] tables of strings, found `{tenant}`"
                ))
            };
            Name::new(&tenant).map_err(|e| invalid(e.to_string()))?;
            let toml::Value::Table(apps) = apps else {
                return Err(shape());
            };
            for (app, entries) in apps {
                Name::new(&app).map_err(|e| invalid(e.to_string()))?;
                let toml::Value::Table(entries) = entries else {
                    return Err(shape());
                };
                let mut app_values = BTreeMap::new();
                for (key, value) in entries {
                    let toml::Value::String(value) = value else {
                        return Err(invalid(format!(
                            "{tenant}.{app}.{key}: secret values must be strings"
                        )));
                    };
                    app_values.insert(key, value);
                }
                values.insert((tenant.clone(), app), app_values);
            }
        }
        Ok(Secrets {
            source: Some(source.to_path_buf()),
            values,
        })
    }

    /// The value of `manifest`'s secret `name`.
    pub(crate) fn value<'a>(
        &'a self,
        manifest: &Manifest,
        name: &Name,
    ) -> Result<&'a str, LoadError> {
        self.values
            .get(&(manifest.tenant.to_string(), manifest.app.to_string()))
            .and_then(|app| app.get(name.as_str()))
            .map(String::as_str)
            .ok_or_else(|| LoadError::MissingSecret {
                app: format!("{}/{}", manifest.tenant, manifest.app),
                name: name.to_string(),
                file: self.source.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_show_values() {
        let path = Path::new("secrets.toml");
        let e = Secrets::parse("[acme.book]\napi-key = \"hunter2\" junk", path).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = Secrets::parse("[acme.book]\napi-key = 42", path).unwrap_err();
        assert!(e.to_string().contains("must be strings"), "{e}");
        let e = Secrets::parse("acme = \"hunter2\"", path).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let ok = Secrets::parse("[acme.book]\napi-key = \"hunter2\"", path).unwrap();
        assert!(!format!("{ok:?}").contains("hunter2"));
    }

    /// The fuzz target `secrets`, run over its corpus as a plain test.
    #[test]
    fn the_fuzz_corpus_of_secrets_files_parses_without_panicking() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/secrets");
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let text = std::fs::read(entry.unwrap().path()).unwrap();
            let _ = Secrets::parse(&String::from_utf8_lossy(&text), Path::new("secrets.toml"));
            inputs += 1;
        }
        assert!(inputs > 0, "{} is empty", dir.display());
    }
}
