//! Reading a TOML config file, for the agent's and the collector's `Config`: the read is
//! bounded, and a syntax error or an unknown field is named by file, line and column.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Largest config file read.
pub const MAX_CONFIG: u64 = 256 * 1024;

/// Why a config file could not be read as TOML of the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG`].
    #[error("{path}: config file larger than {MAX_CONFIG} bytes")]
    TooLarge { path: PathBuf },
    /// TOML syntax, or an unknown or mistyped field.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The text of the config file at `path`, at most [`MAX_CONFIG`] bytes.
pub fn read(path: &Path) -> Result<String, ConfigFileError> {
    let io = |source| ConfigFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_CONFIG {
        return Err(ConfigFileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// `src` (the text of `path`) as a `T`.
pub fn parse<T: DeserializeOwned>(path: &Path, src: &str) -> Result<T, ConfigFileError> {
    toml::from_str(src).map_err(|e| {
        let (line, column, message) = holdfast_shared::policy::locate(src, &e);
        ConfigFileError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        port: Option<u16>,
    }

    #[test]
    fn reads_are_bounded_and_errors_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "port = 1\nprot = 2\n").unwrap();
        let src = read(&p).unwrap();
        let err = parse::<Raw>(&p, &src).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2:1: unknown field `prot`", p.display())),
            "{err}"
        );
        std::fs::write(&p, vec![b'#'; MAX_CONFIG as usize + 1]).unwrap();
        assert!(matches!(read(&p), Err(ConfigFileError::TooLarge { .. })));
        assert!(matches!(
            read(&dir.path().join("none")),
            Err(ConfigFileError::Io { .. })
        ));
    }
}
