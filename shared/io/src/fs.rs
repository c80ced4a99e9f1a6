//! Files both binaries write and read: secrets and certificates written atomically with a
//! mode, and PEM blocks read back with their label checked.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a file (a PEM block, an identity, a secret) could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// It is there but not what it should be (for PEM: not PEM, or another label first).
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// Why a bounded read of a text file failed.
#[derive(Debug, thiserror::Error)]
pub enum TextReadError {
    /// The file could not be opened or read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file holds more than the bound (`size` as the file system reports it).
    #[error("{size} bytes, more than the {max}-byte limit")]
    TooLarge { size: u64, max: u64 },
    /// The bytes are not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
}

/// The text of `path`, refused past `max` bytes: at most `max + 1` bytes are ever read, even
/// from a file that grows while it is read or a FIFO that never ends.
pub fn read_text(path: &Path, max: u64) -> Result<String, TextReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    let n = file.take(max.saturating_add(1)).read_to_end(&mut bytes)? as u64;
    if n > max {
        let size = std::fs::metadata(path).map_or(n, |m| m.len().max(n));
        return Err(TextReadError::TooLarge { size, max });
    }
    String::from_utf8(bytes).map_err(|_| TextReadError::NotUtf8)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename) with the given Unix mode.
/// Collector and agent both write their secrets through here.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// PEM-encodes DER bytes under `label`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der.to_vec()))
}

/// Reads the first PEM block of `path`, which must carry `label`.
pub fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>, FileError> {
    let text = std::fs::read(path).map_err(|source| FileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |message| FileError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let block = pem::parse(text).map_err(|e| corrupt(format!("not PEM: {e}")))?;
    if block.tag() != label {
        return Err(corrupt(format!(
            "expected a {label} block, found {}",
            block.tag()
        )));
    }
    Ok(block.into_contents())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_keep_their_mode_and_pem_labels_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, key) = crate::testing::scratch("sub/key.pem");
        write_file_atomic(&key, to_pem("PRIVATE KEY", b"\x01\x02").as_bytes(), 0o600).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_pem(&key, "PRIVATE KEY").unwrap(), b"\x01\x02");
        let wrong = read_pem(&key, "CERTIFICATE").unwrap_err().to_string();
        assert!(
            wrong.ends_with("expected a CERTIFICATE block, found PRIVATE KEY"),
            "{wrong}"
        );
        std::fs::write(&key, "junk").unwrap();
        assert!(read_pem(&key, "PRIVATE KEY")
            .unwrap_err()
            .to_string()
            .contains("not PEM"));
        assert!(matches!(
            read_pem(&dir.path().join("none"), "X"),
            Err(FileError::Io { .. })
        ));
    }
}
