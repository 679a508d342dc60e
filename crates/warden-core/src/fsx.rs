//! Defensive file handling for keys and data: private modes, no symlinks, atomic replacement.
//!
//! Every file warden writes that holds keys or data is created 0600 inside 0700 directories and
//! opened without following symlinks; files replaced in place are written to a temporary file in
//! the same directory, synced, and renamed, so a crash never leaves half a file behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

/// Problems with a sensitive file's location or permissions, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a symbolic link; warden does not follow symlinks for key and data files")]
    Symlink { path: PathBuf },
    #[error(
        "{path} is readable or writable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is a directory readable or writable by group or others (mode {mode:o}); run `chmod 700 {path}`")]
    DirTooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is owned by uid {owner}, not by the user running warden (uid {me})")]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
}

impl FsError {
    pub fn io(path: &Path, source: io::Error) -> Self {
        // O_NOFOLLOW on a symlink fails with ELOOP: say what it means.
        if source.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
            return Self::Symlink {
                path: path.to_path_buf(),
            };
        }
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn nofollow() -> i32 {
    OFlag::O_NOFOLLOW.bits()
}

/// Creates `path` (and missing parents) as a 0700 directory; an existing directory is checked.
pub fn create_private_dir(path: &Path) -> Result<(), FsError> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => {}
        Err(e) => return Err(FsError::io(path, e)),
    }
    check_private_dir(path)
}

/// Checks that `path` is a directory not open to group or others, owned by us.
pub fn check_private_dir(path: &Path) -> Result<(), FsError> {
    let meta = fs::symlink_metadata(path).map_err(|e| FsError::io(path, e))?;
    if !meta.is_dir() {
        return Err(FsError::io(
            path,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    check_owner(path, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FsError::DirTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), FsError> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(FsError::WrongOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// Opens a sensitive file for reading: no symlink, a regular file, ours, mode without group or
/// other bits. Returns its content, at most `limit` bytes.
pub fn read_private(path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nofollow())
        .open(path)
        .map_err(|e| FsError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FsError::io(path, e))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    check_owner(path, &meta)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FsError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_limited(file, path, limit)
}

/// Reads at most `limit` bytes of an already-open file; more is an error, not a silent cut.
pub fn read_limited(file: impl Read, path: &Path, limit: u64) -> Result<Vec<u8>, FsError> {
    let mut content = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut content)
        .map_err(|e| FsError::io(path, e))?;
    if content.len() as u64 > limit {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(content)
}

/// Creates a new private (0600) file; fails if anything exists at `path`, symlinks included.
pub fn create_private_new(path: &Path) -> Result<File, FsError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nofollow())
        .open(path)
        .map_err(|e| FsError::io(path, e))
}

/// A file being written next to its destination; `commit` renames it into place, dropping it
/// without committing removes it. Nothing half-written is ever visible at the destination.
pub struct PendingFile {
    file: Option<File>,
    temp: PathBuf,
    dest: PathBuf,
}

impl PendingFile {
    /// Starts writing what will become `dest` (created 0600).
    pub fn create(dest: &Path) -> Result<Self, FsError> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest.file_name().ok_or_else(|| {
            FsError::io(
                dest,
                io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
            )
        })?;
        let suffix: [u8; 6] = crate::rand::array();
        let temp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            hex::encode(suffix)
        ));
        let file = create_private_new(&temp)?;
        Ok(Self {
            file: Some(file),
            temp,
            dest: dest.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("present until commit")
    }

    /// Syncs the data, renames the file over `dest`, and syncs the directory.
    pub fn commit(mut self) -> Result<(), FsError> {
        let file = self.file.take().expect("present until commit");
        file.sync_all().map_err(|e| FsError::io(&self.temp, e))?;
        drop(file);
        fs::rename(&self.temp, &self.dest).map_err(|e| FsError::io(&self.dest, e))?;
        sync_parent(&self.dest)?;
        Ok(())
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Writes `content` to `dest` atomically (temporary file, fsync, rename, directory fsync).
pub fn write_atomic_private(dest: &Path, content: &[u8]) -> Result<(), FsError> {
    let mut pending = PendingFile::create(dest)?;
    pending
        .write_all(content)
        .map_err(|e| FsError::io(dest, e))?;
    pending.commit()
}

/// Syncs the directory holding `path`, so a rename or create in it is durable.
pub fn sync_parent(path: &Path) -> Result<(), FsError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_refuse_open_modes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic_private(&path, b"x").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private(&path, 10).unwrap(), b"x");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private(&path, 10),
            Err(FsError::TooOpen { mode: 0o640, .. })
        ));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            read_private(&link, 10),
            Err(FsError::Symlink { .. })
        ));
        assert!(matches!(
            read_private(&path, 0),
            Err(FsError::TooLarge { .. })
        ));
    }

    #[test]
    fn pending_file_leaves_nothing_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        {
            let mut pending = PendingFile::create(&dest).unwrap();
            pending.write_all(b"partial").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut pending = PendingFile::create(&dest).unwrap();
        pending.write_all(b"whole").unwrap();
        pending.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_dirs_are_0700_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            check_private_dir(&sub),
            Err(FsError::DirTooOpen { .. })
        ));
    }
}
