//! Reading a TOML config file, for the agent's and the collector's `Config`: the read is
//! bounded, and a syntax error or an unknown field is named by file, line and column.

use crate::fs::TextReadError;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Largest config file read.
pub const MAX_CONFIG: u64 = 256 * 1024;

/// Why a config file could not be read as TOML of the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read. The I/O error is in the message and is not also its
    /// `source`, so a chain of causes does not say it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG`].
    #[error("{path}: config file larger than {MAX_CONFIG} bytes")]
    TooLarge { path: PathBuf },
    /// The file is not UTF-8.
    #[error("{path}: config file is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
    /// TOML syntax, or an unknown or mistyped field.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Why a config (the agent's or the collector's) was refused: the file, or one value in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (or is over [`MAX_CONFIG`]), or is not TOML of the
    /// config's shape.
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// A value is out of range or inconsistent.
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        message: String,
    },
}

impl ConfigError {
    /// `field` of the config at `path` is refused for `message`.
    pub fn invalid(path: &Path, field: &'static str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        }
    }
}

/// The text of the config file at `path`, at most [`MAX_CONFIG`] bytes.
pub fn read(path: &Path) -> Result<String, ConfigFileError> {
    crate::fs::read_text(path, MAX_CONFIG).map_err(|e| {
        let path = path.to_path_buf();
        match e {
            TextReadError::Io(error) => ConfigFileError::Io { path, error },
            TextReadError::TooLarge { .. } => ConfigFileError::TooLarge { path },
            TextReadError::NotUtf8 => ConfigFileError::NotUtf8 { path },
        }
    })
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

/// The config at `path`: its text (see [`read`]) handed to [`validated`].
pub fn load<R: DeserializeOwned, C>(
    path: &Path,
    validate: impl FnOnce(R, &Path, &Path) -> Result<C, ConfigError>,
) -> Result<C, ConfigError> {
    let src = read(path)?;
    validated(path, &src, validate)
}

/// `src` (the text of `path`) parsed as its raw shape `R`, then `validate(raw, path, base)`,
/// where `base` is the file's folder, which anchors relative paths.
pub fn validated<R: DeserializeOwned, C>(
    path: &Path,
    src: &str,
    validate: impl FnOnce(R, &Path, &Path) -> Result<C, ConfigError>,
) -> Result<C, ConfigError> {
    let raw: R = parse(path, src)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    validate(raw, path, &base)
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
        let (dir, p) = crate::testing::scratch("c.toml");
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
        std::fs::write(&p, b"name = \"\xff\"\n").unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{}: config file is not valid UTF-8", p.display())
        );
    }
}
