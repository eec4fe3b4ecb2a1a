//! Human-readable sizes (`"64MiB"`) and durations (`"5s"`), as the conventions require.

use std::time::Duration;

/// Parses a byte size such as `"64MiB"`, `"1 GB"` or `"4096"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("{text:?} is not a size like \"64MiB\": {e}"))
}

/// Parses a duration such as `"5s"`, `"250ms"` or `"1m 30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"5s\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("1 KiB"), Ok(1024));
        assert_eq!(parse_size("10"), Ok(10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5").is_err());
    }
}
