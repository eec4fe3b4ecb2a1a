//! The bundle: every function the image serves, with its route, its limits and its precompiled
//! component, in one byte string the kernel receives from the boot loader (QEMU's `-initrd`).
//!
//! The format is this crate's own and deliberately dull: the kernel has no serde and no file
//! system, and a length-prefixed layout is decoded in a few lines with every length checked.
//! All integers are little-endian:
//!
//! ```text
//! "MESHWAB\0"  u32 version (2)  u32 execution (0 Pulley, 1 native x86_64)  u32 count
//! count × { str tenant, str app, str name, str route,
//!           u64 max_memory, u64 timeout_ms, u64 max_request_body, bytes code }
//! str = u32 length + UTF-8, bytes = u64 length + bytes
//! ```
//!
//! The precompiled code is trusted (it is native-equivalent code for the engine): the bundle must
//! come from [`compile_bundle`](crate::compile_bundle), built on the host from the manifests.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::engine::Execution;

const MAGIC: &[u8; 8] = b"MESHWAB\0";
const VERSION: u32 = 2;

/// The functions an image serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// What the code was compiled for: the kernel makes its engine with
    /// [`engine_config`](crate::engine_config)`(execution)`.
    pub execution: Execution,
    pub functions: Vec<BundledFunction>,
}

/// One function of the bundle: who it belongs to, where it is routed, its limits, its code.
#[derive(Clone, PartialEq, Eq)]
pub struct BundledFunction {
    pub tenant: String,
    pub app: String,
    pub name: String,
    /// A prefix route such as `/acme/hello`: it matches that path and every path below it.
    pub route: String,
    /// Bytes of linear memory the instance may grow to; also the cap on what the host holds for
    /// it (its response body, its header fields).
    pub max_memory: u64,
    /// Wall-clock deadline of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Largest request body accepted, in bytes; more is refused with 413.
    pub max_request_body: u64,
    /// The component precompiled for [`engine_config`](crate::engine_config).
    pub code: Vec<u8>,
}

impl BundledFunction {
    /// `tenant/app/name`, the id the Linux host uses in its logs.
    pub fn id(&self) -> String {
        alloc::format!("{}/{}/{}", self.tenant, self.app, self.name)
    }
}

impl fmt::Debug for BundledFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundledFunction")
            .field("tenant", &self.tenant)
            .field("app", &self.app)
            .field("name", &self.name)
            .field("route", &self.route)
            .field("max_memory", &self.max_memory)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_request_body", &self.max_request_body)
            .field("code", &format_args!("{} bytes", self.code.len()))
            .finish()
    }
}

/// Why a byte string is not a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// It does not start with the bundle's magic bytes.
    NotABundle,
    /// A bundle of a format version this build does not read.
    Version(u32),
    /// It ends in the middle of a field.
    Truncated { field: &'static str, offset: usize },
    /// A string field is not UTF-8.
    NotUtf8 { field: &'static str, offset: usize },
    /// Bytes after the last function.
    TrailingBytes { offset: usize },
    /// An execution mode this build does not know.
    Execution(u32),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::NotABundle => f.write_str("not a meshwa bundle (bad magic bytes)"),
            BundleError::Version(version) => write!(
                f,
                "bundle format version {version}, but this build reads version {VERSION}"
            ),
            BundleError::Truncated { field, offset } => {
                write!(f, "bundle truncated in `{field}` at byte {offset}")
            }
            BundleError::NotUtf8 { field, offset } => {
                write!(f, "bundle field `{field}` at byte {offset} is not UTF-8")
            }
            BundleError::Execution(code) => write!(f, "unknown execution mode {code}"),
            BundleError::TrailingBytes { offset } => {
                write!(
                    f,
                    "unexpected bytes after the last function, at byte {offset}"
                )
            }
        }
    }
}

impl core::error::Error for BundleError {}

impl Bundle {
    /// Reads a bundle, checking every length against what is left.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let mut reader = Reader { bytes, offset: 0 };
        if reader.take(MAGIC.len(), "magic") != Ok(MAGIC.as_slice()) {
            return Err(BundleError::NotABundle);
        }
        let version = reader.u32("version")?;
        if version != VERSION {
            return Err(BundleError::Version(version));
        }
        let execution = match reader.u32("execution")? {
            0 => Execution::Pulley,
            1 => Execution::Native,
            other => return Err(BundleError::Execution(other)),
        };
        let count = reader.u32("count")?;
        // Each function takes at least 48 bytes: no allocation beyond what the input can hold.
        let mut functions = Vec::with_capacity((count as usize).min(bytes.len() / 48));
        for _ in 0..count {
            functions.push(BundledFunction {
                tenant: reader.string("tenant")?,
                app: reader.string("app")?,
                name: reader.string("name")?,
                route: reader.string("route")?,
                max_memory: reader.u64("max_memory")?,
                timeout_ms: reader.u64("timeout_ms")?,
                max_request_body: reader.u64("max_request_body")?,
                code: {
                    let len = reader.u64("code length")?;
                    let len = usize::try_from(len).map_err(|_| reader.truncated("code"))?;
                    reader.take(len, "code")?.to_vec()
                },
            });
        }
        if reader.offset != bytes.len() {
            return Err(BundleError::TrailingBytes {
                offset: reader.offset,
            });
        }
        Ok(Bundle {
            execution,
            functions,
        })
    }

    /// Writes the bundle in the format [`Bundle::decode`] reads.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .functions
            .iter()
            .map(|f| {
                64 + f.tenant.len() + f.app.len() + f.name.len() + f.route.len() + f.code.len()
            })
            .sum();
        let mut out = Vec::with_capacity(16 + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let execution: u32 = match self.execution {
            Execution::Pulley => 0,
            Execution::Native => 1,
        };
        out.extend_from_slice(&execution.to_le_bytes());
        out.extend_from_slice(&len_u32(self.functions.len()).to_le_bytes());
        for function in &self.functions {
            for text in [
                &function.tenant,
                &function.app,
                &function.name,
                &function.route,
            ] {
                out.extend_from_slice(&len_u32(text.len()).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            out.extend_from_slice(&function.max_memory.to_le_bytes());
            out.extend_from_slice(&function.timeout_ms.to_le_bytes());
            out.extend_from_slice(&function.max_request_body.to_le_bytes());
            out.extend_from_slice(&(function.code.len() as u64).to_le_bytes());
            out.extend_from_slice(&function.code);
        }
        out
    }
}

/// A length as the format's `u32`. Names, routes and function counts are far below 4 GiB; a
/// longer one would be a bug in the bundler, so it saturates (and decoding then fails loudly).
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn truncated(&self, field: &'static str) -> BundleError {
        BundleError::Truncated {
            field,
            offset: self.offset,
        }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], BundleError> {
        let end = self
            .offset
            .checked_add(len)
            .ok_or_else(|| self.truncated(field))?;
        let taken = self
            .bytes
            .get(self.offset..end)
            .ok_or_else(|| self.truncated(field))?;
        self.offset = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BundleError> {
        let bytes = self.take(N, field)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, BundleError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, BundleError> {
        self.array(field).map(u64::from_le_bytes)
    }

    fn string(&mut self, field: &'static str) -> Result<String, BundleError> {
        let len = self.u32(field)? as usize;
        let offset = self.offset;
        let bytes = self.take(len, field)?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| BundleError::NotUtf8 { field, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Bundle {
        Bundle {
            execution: Execution::Native,
            functions: vec![
                BundledFunction {
                    tenant: "acme".into(),
                    app: "greeter".into(),
                    name: "hello".into(),
                    route: "/acme/hello".into(),
                    max_memory: 16 << 20,
                    timeout_ms: 2000,
                    max_request_body: 64 << 10,
                    code: vec![1, 2, 3],
                },
                BundledFunction {
                    tenant: "globex".into(),
                    app: "textkit".into(),
                    name: "upper".into(),
                    route: "/globex/upper".into(),
                    max_memory: 1,
                    timeout_ms: 2,
                    max_request_body: 3,
                    code: vec![],
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let bundle = sample();
        assert_eq!(Bundle::decode(&bundle.encode()).unwrap(), bundle);
        assert_eq!(
            Bundle::decode(&Bundle::default().encode()).unwrap(),
            Bundle::default()
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Bundle::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(
            Bundle::decode(b"\x7fELF....").unwrap_err(),
            BundleError::NotABundle
        );
        let mut bytes = sample().encode();
        bytes[8] = 9;
        assert_eq!(Bundle::decode(&bytes).unwrap_err(), BundleError::Version(9));
        let mut bytes = sample().encode();
        bytes[12] = 7;
        assert_eq!(
            Bundle::decode(&bytes).unwrap_err(),
            BundleError::Execution(7)
        );
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            Bundle::decode(&bytes),
            Err(BundleError::TrailingBytes { .. })
        ));
        // A count far beyond the input allocates nothing big and fails.
        let mut bytes = Bundle::default().encode();
        bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Bundle::decode(&bytes),
            Err(BundleError::Truncated { .. })
        ));
        // A huge code length fails without allocating.
        let mut bytes = sample().encode();
        let code_len_at = 20 + 4 * 4 + "acmegreeterhello/acme/hello".len() + 24;
        bytes[code_len_at..code_len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Bundle::decode(&bytes),
            Err(BundleError::Truncated { .. })
        ));
    }

    #[test]
    fn refuses_non_utf8_names() {
        let mut bytes = sample().encode();
        bytes[24] = 0xff;
        assert!(matches!(
            Bundle::decode(&bytes),
            Err(BundleError::NotUtf8 {
                field: "tenant",
                ..
            })
        ));
    }
}
