//! Access to customer folders on this platform, for the `strip_access` order: what is
//! recorded before, how access is taken away, and how it is given back. This is the platform
//! seam: POSIX owner and mode bits here; a Windows build implements the same three functions
//! over the folder's DACL (saved as SDDL, replaced by SYSTEM and Administrators only, put
//! back), a macOS build adds and removes `chmod +a` deny entries. `orders.rs` only calls them.

use crate::safe_fs::{self, FsError, Stat};
use serde::{Deserialize, Serialize};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;

/// A path's access as it was before it was taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
}

/// What taking access away did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Owned by root, 0700: only an administrator can open it.
    AdminOnly,
    /// Mode 000 (the agent is not root, so the owner could change it back).
    ModeOnly,
}

impl Taken {
    /// For the receipt.
    pub fn describe(self) -> &'static str {
        match self {
            Taken::AdminOnly => "now root-only (0700)",
            Taken::ModeOnly => "mode 000 (agent not root: owner could undo)",
        }
    }
}

/// Whether the agent runs with the rights to give folders to root.
pub fn running_as_admin() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The access to record before taking it away.
pub fn snapshot(st: &Stat) -> Saved {
    Saved {
        uid: st.uid,
        gid: st.gid,
        mode: st.mode & 0o7777,
    }
}

/// Takes access to the open file or folder `fd` away from everyone but an administrator
/// (or, without the rights for that, from everyone but its owner's own undoing). By
/// descriptor: whatever the user does to its name meanwhile, this is the file changed.
pub fn take_away(fd: BorrowedFd<'_>) -> Result<Taken, FsError> {
    if running_as_admin() {
        safe_fs::set_owner_mode(fd, 0, 0, 0o700)?;
        Ok(Taken::AdminOnly)
    } else {
        safe_fs::set_mode(fd, 0o000)?;
        Ok(Taken::ModeOnly)
    }
}

/// Gives the open file or folder `fd` its recorded access back.
pub fn give_back(fd: BorrowedFd<'_>, saved: &Saved) -> Result<(), FsError> {
    if running_as_admin() {
        safe_fs::set_owner_mode(fd, saved.uid, saved.gid, saved.mode)
    } else {
        safe_fs::set_mode(fd, saved.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn taking_away_and_giving_back_round_trips_the_mode() {
        let (_dir, p) = holdfast_io::testing::scratch("customers");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o750)).unwrap();
        let fd = safe_fs::open_dir(&p).unwrap();
        let saved = snapshot(&safe_fs::stat(fd.as_fd()).unwrap());
        assert_eq!(saved.mode, 0o750);
        let taken = take_away(fd.as_fd()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o7777;
        match taken {
            Taken::AdminOnly => {
                assert_eq!((mode, std::fs::metadata(&p).unwrap().uid()), (0o700, 0))
            }
            Taken::ModeOnly => assert_eq!(mode, 0),
        }
        give_back(fd.as_fd(), &saved).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o750, saved.uid, saved.gid)
        );
    }
}
