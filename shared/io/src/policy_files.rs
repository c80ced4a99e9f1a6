//! Reading policy files from disk (the only place they are read, by the agent and the
//! collector alike); parsing and validation are `holdfast_shared::policy`'s.

use crate::fs::TextReadError;
use holdfast_shared::policy::{PolicyErrors, PolicySet, DEFAULT_PACK};
use std::path::{Path, PathBuf};

/// Largest policy file accepted.
pub const MAX_POLICY_FILE: u64 = 1024 * 1024;

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The directory or a file in it could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A policy file is larger than [`MAX_POLICY_FILE`].
    #[error("{path}: policy file is {size} bytes, more than the {MAX_POLICY_FILE}-byte limit")]
    TooLarge { path: PathBuf, size: u64 },
    /// A policy file is not UTF-8.
    #[error("{path}: policy file is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
    /// The directory holds no `.toml` file.
    #[error("{path}: no .toml policy files in this directory")]
    Empty { path: PathBuf },
    /// The files were read but do not validate.
    #[error(transparent)]
    Invalid(#[from] PolicyErrors),
}

/// Reads every `*.toml` file in `dir`, sorted by name, as `(display path, source)`.
pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, PolicyLoadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PolicyLoadError::Io { path, source }
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(PolicyLoadError::Empty {
            path: dir.to_path_buf(),
        });
    }
    names.iter().map(|p| read_file(p)).collect()
}

/// Reads one policy file, bounded by [`MAX_POLICY_FILE`], as `(display path, source)`.
pub fn read_file(path: &Path) -> Result<(String, String), PolicyLoadError> {
    let src = crate::fs::read_text(path, MAX_POLICY_FILE).map_err(|e| {
        let path = path.to_path_buf();
        match e {
            TextReadError::Io(source) => PolicyLoadError::Io { path, source },
            TextReadError::TooLarge { size, .. } => PolicyLoadError::TooLarge { path, size },
            TextReadError::NotUtf8 => PolicyLoadError::NotUtf8 { path },
        }
    })?;
    Ok((path.display().to_string(), src))
}

/// The policy files at `path`: every `*.toml` of a directory, or the one file.
pub fn read_path(path: &Path) -> Result<Vec<(String, String)>, PolicyLoadError> {
    if path.is_dir() {
        read_dir(path)
    } else {
        Ok(vec![read_file(path)?])
    }
}

/// Loads and compiles the policies in `dir`, or the built-in default pack when `dir` is `None`.
pub fn load(dir: Option<&Path>, home: &str) -> Result<PolicySet, PolicyLoadError> {
    match dir {
        None => Ok(PolicySet::compile(DEFAULT_PACK, home)?),
        Some(dir) => {
            let files = read_dir(dir)?;
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(n, s)| (n.as_str(), s.as_str()))
                .collect();
            Ok(PolicySet::compile(&refs, home)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_dir(dir.path()),
            Err(PolicyLoadError::Empty { .. })
        ));
        std::fs::write(
            dir.path().join("a.toml"),
            "[[rule]]\nid = \"x\"\nseverity = \"low\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let set = load(Some(dir.path()), "/home/u").unwrap();
        assert_eq!(set.rules.len(), 1);
        std::fs::write(
            dir.path().join("b.toml"),
            "[[rule]]\nid = \"y\"\nseverity = \"hi\"\n",
        )
        .unwrap();
        let err = load(Some(dir.path()), "/home/u").unwrap_err().to_string();
        assert!(err.contains("b.toml:3:12: unknown variant `hi`"), "{err}");
        std::fs::write(dir.path().join("c.toml"), [0xff, 0xfe]).unwrap();
        assert!(matches!(
            load(Some(dir.path()), "/"),
            Err(PolicyLoadError::NotUtf8 { .. })
        ));
    }
}
