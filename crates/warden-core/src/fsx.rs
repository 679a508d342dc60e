//! Defensive file handling for keys and data: private modes, no symlinks, atomic replacement.
//!
//! Every file warden writes that holds keys or data is created 0600 inside 0700 directories and
//! opened without following symlinks. Outputs are written as a [`PendingFile`]: a file with no
//! name until it is complete and synced, so a crash (even SIGKILL) never leaves half a file, or a
//! temporary holding plaintext, behind.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};

/// Problems with a sensitive file's location or permissions, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}")]
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
    #[error("cannot create {path}: the directory {dir} does not exist")]
    NoDirectory { path: PathBuf, dir: PathBuf },
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

// Implements: V87
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
    let (file, meta) = open_regular(path, nofollow())?;
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

/// Opens `path` for reading (with `flags`, e.g. `O_NOFOLLOW`) if it is a regular file. The open
/// does not block: a FIFO would wait for a writer for ever, and is refused as not regular.
pub fn open_regular(path: &Path, flags: i32) -> Result<(File, std::fs::Metadata), FsError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags | OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| FsError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FsError::io(path, e))?;
    if !meta.is_file() {
        return Err(FsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok((file, meta))
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

// Implements: V9, V87
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

/// A file being written that only appears at its destination once complete: `commit` puts it
/// in place; dropping it (or a crash, even SIGKILL) leaves nothing behind.
///
/// On Linux the bytes go to an unnamed file (`O_TMPFILE`) in the destination's directory, which
/// has no name until [`PendingFile::commit`] links it in through `/proc/self/fd/N` (`linkat`
/// with `AT_SYMLINK_FOLLOW`); a process killed before that leaves no file at all, and the kernel
/// frees the space. Replacing an existing file links to a fresh temporary name first and
/// renames it over the destination, so readers see the old file or the new one, never a mix.
///
/// Where `O_TMPFILE` is not available (file systems without it, `/proc` not mounted) the bytes
/// go to a named temporary `.NAME.<12 hex>.tmp` next to the destination, removed on drop. A
/// process killed while writing cannot remove it; the next `PendingFile` for the same
/// destination removes such leftovers: same name pattern, a regular file owned by us, last
/// modified before this process started writing, and not locked (every writer holds an
/// exclusive `flock` on its temporary while it lives).
pub struct PendingFile {
    /// Present until committed.
    file: Option<Flock<File>>,
    body: Body,
    dest: PathBuf,
    committed: bool,
}

/// Where a pending file's bytes are until commit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// An `O_TMPFILE`: no name until it is linked in.
    Unnamed,
    /// The fallback: a named temporary next to the destination.
    Named(PathBuf),
}

/// How a pending file is made (the fallback can be chosen, so tests can exercise it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    /// `O_TMPFILE`, falling back to a named temporary where unsupported.
    Unnamed,
    /// A named temporary (chosen by tests, to exercise the fallback).
    #[cfg_attr(not(test), allow(dead_code))]
    Named,
}

/// The directory and file name of `dest`.
fn split_dest(dest: &Path) -> Result<(&Path, &OsStr), FsError> {
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
    Ok((dir, name))
}

/// `.NAME.<12 hex>.tmp` in `dir`, a fresh random name.
fn temp_name(dir: &Path, name: &OsStr) -> PathBuf {
    let suffix: [u8; 6] = crate::rand::array();
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.tmp", hex::encode(suffix)));
    dir.join(temp)
}

/// True when `candidate` is a temporary name `temp_name` makes for `name`.
fn is_temp_name_for(candidate: &[u8], name: &[u8]) -> bool {
    let Some(rest) = candidate
        .strip_prefix(b".")
        .and_then(|r| r.strip_prefix(name))
        .and_then(|r| r.strip_prefix(b"."))
        .and_then(|r| r.strip_suffix(b".tmp"))
    else {
        return false;
    };
    rest.len() == 12
        && rest
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// When this process started writing output files: temporaries modified before that belong to
/// earlier runs.
fn writing_since() -> SystemTime {
    static SINCE: OnceLock<SystemTime> = OnceLock::new();
    *SINCE.get_or_init(SystemTime::now)
}

/// Removes what earlier, killed writers of `dest` left beside it (see [`PendingFile`]): for
/// readers of a file that holds secrets, so that a killed writer's copy does not wait for the
/// next write. Best effort, like the writers' own sweep.
pub fn remove_stale_temporaries_of(dest: &Path) {
    if let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) {
        remove_stale_temporaries(dir, name);
    }
}

/// Removes what earlier, killed runs left for `name` in `dir` (see [`PendingFile`]). Best
/// effort: a leftover that cannot be examined or removed is left alone.
fn remove_stale_temporaries(dir: &Path, name: &OsStr) {
    let since = writing_since();
    let me = nix::unistd::geteuid().as_raw();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !is_temp_name_for(entry.file_name().as_bytes(), name.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let older = meta.modified().is_ok_and(|t| t < since);
        if !meta.is_file() || meta.uid() != me || !older {
            continue;
        }
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(nofollow())
            .open(&path)
        else {
            continue;
        };
        // A writer that is still alive holds its lock; a killed one released it.
        if let Ok(_unused) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// `O_TMPFILE` is not supported here: by the file system (EOPNOTSUPP), or by an old kernel that
/// sees only its `O_DIRECTORY` part (EISDIR) or rejects the flag (EINVAL).
fn tmpfile_unsupported(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL)
    )
}

/// The path through which an open file can be linked back into the tree.
fn proc_fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn link_following(from: &Path, to: &Path) -> io::Result<()> {
    nix::unistd::linkat(None, from, None, to, AtFlags::AT_SYMLINK_FOLLOW).map_err(io::Error::from)
}

/// Why creating a pending file failed, under the destination's name (the temporary's name
/// means nothing to the user).
fn create_error(dest: &Path, dir: &Path, err: io::Error) -> FsError {
    if err.kind() == io::ErrorKind::NotFound {
        return FsError::NoDirectory {
            path: dest.to_path_buf(),
            dir: dir.to_path_buf(),
        };
    }
    FsError::io(dest, err)
}

fn lock(file: File, path: &Path) -> Result<Flock<File>, FsError> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| FsError::io(path, io::Error::from(errno)))
}

impl PendingFile {
    /// Starts writing what will become `dest` (created 0600).
    pub fn create(dest: &Path) -> Result<Self, FsError> {
        Self::create_with(dest, Strategy::Unnamed)
    }

    fn create_with(dest: &Path, strategy: Strategy) -> Result<Self, FsError> {
        let (dir, name) = split_dest(dest)?;
        remove_stale_temporaries(dir, name);
        if strategy == Strategy::Unnamed {
            match OpenOptions::new()
                .write(true)
                .mode(0o600)
                .custom_flags(OFlag::O_TMPFILE.bits())
                .open(dir)
            {
                // Linking back needs /proc; without it the file could never get a name.
                Ok(file) if fs::symlink_metadata(proc_fd_path(&file)).is_ok() => {
                    return Ok(Self {
                        file: Some(lock(file, dest)?),
                        body: Body::Unnamed,
                        dest: dest.to_path_buf(),
                        committed: false,
                    });
                }
                Ok(_) => {}
                Err(e) if tmpfile_unsupported(&e) => {}
                Err(e) => return Err(create_error(dest, dir, e)),
            }
        }
        let temp = temp_name(dir, name);
        let file = create_private_new(&temp).map_err(|e| match e {
            FsError::Io { source, .. } => create_error(dest, dir, source),
            other => other,
        })?;
        let file = match lock(file, dest) {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        };
        Ok(Self {
            file: Some(file),
            body: Body::Named(temp),
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("present until commit")
    }

    /// Syncs the data, puts the file at `dest` (replacing what is there), and syncs the
    /// directory. On failure nothing is left but what was at `dest` before.
    pub fn commit(mut self) -> Result<(), FsError> {
        let file = self.file.take().expect("present until commit");
        file.sync_all().map_err(|e| FsError::io(&self.dest, e))?;
        match &self.body {
            Body::Named(temp) => {
                fs::rename(temp, &self.dest).map_err(|e| FsError::io(&self.dest, e))?;
            }
            Body::Unnamed => self.link_unnamed(&file)?,
        }
        self.committed = true;
        // The lock is held until the file has its final name.
        drop(file);
        sync_parent(&self.dest)
    }

    /// Like [`commit`](Self::commit), but refuses (`AlreadyExists`, nothing changed) when
    /// `dest` exists by then: the check and the naming are one atomic link.
    pub fn commit_new(mut self) -> Result<(), FsError> {
        let file = self.file.take().expect("present until commit");
        file.sync_all().map_err(|e| FsError::io(&self.dest, e))?;
        let source = match &self.body {
            Body::Named(temp) => temp.clone(),
            Body::Unnamed => proc_fd_path(&file),
        };
        link_following(&source, &self.dest).map_err(|e| FsError::io(&self.dest, e))?;
        if let Body::Named(temp) = &self.body {
            let _ = fs::remove_file(temp);
        }
        self.committed = true;
        drop(file);
        sync_parent(&self.dest)
    }

    /// Gives the unnamed file its name: a link straight to `dest` when nothing is there;
    /// otherwise a link to a fresh temporary name, renamed over `dest`.
    fn link_unnamed(&self, file: &File) -> Result<(), FsError> {
        let source = proc_fd_path(file);
        match link_following(&source, &self.dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FsError::io(&self.dest, e)),
        }
        let (dir, name) = split_dest(&self.dest)?;
        let mut attempts = 0;
        let temp = loop {
            let temp = temp_name(dir, name);
            match link_following(&source, &temp) {
                Ok(()) => break temp,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => {
                    attempts += 1;
                }
                Err(e) => return Err(FsError::io(&self.dest, e)),
            }
        };
        fs::rename(&temp, &self.dest).map_err(|e| {
            let _ = fs::remove_file(&temp);
            FsError::io(&self.dest, e)
        })
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
        if let (Body::Named(temp), false) = (&self.body, self.committed) {
            let _ = fs::remove_file(temp);
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

/// Writes `content` as the new file `dest`, atomically: refused if `dest` exists, and no
/// partial file under any name if the process dies first.
pub fn write_new_private(dest: &Path, content: &[u8]) -> Result<(), FsError> {
    let mut pending = PendingFile::create(dest)?;
    pending
        .write_all(content)
        .map_err(|e| FsError::io(dest, e))?;
    pending.commit_new()
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

    /// Verifies: V87
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
        // A FIFO (mode 0600, ours) is refused at once: opening it must not wait for a writer.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            read_private(&fifo, 10),
            Err(FsError::NotRegular { .. })
        ));
        assert!(matches!(
            open_regular(&fifo, 0),
            Err(FsError::NotRegular { .. })
        ));
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn pending_file_leaves_nothing_unless_committed() {
        for strategy in [Strategy::Unnamed, Strategy::Named] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("out");
            {
                let mut pending = PendingFile::create_with(&dest, strategy).unwrap();
                pending.write_all(b"partial").unwrap();
            }
            assert!(names_in(dir.path()).is_empty(), "{strategy:?}");
            let mut pending = PendingFile::create_with(&dest, strategy).unwrap();
            pending.write_all(b"whole").unwrap();
            pending.commit().unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"whole");
            assert_eq!(names_in(dir.path()), ["out"], "{strategy:?}");
            assert_eq!(
                fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
                0o600
            );

            // Replacing: the old content stays until the commit, then the new one is whole.
            let mut pending = PendingFile::create_with(&dest, strategy).unwrap();
            pending.write_all(b"replacement").unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"whole");
            pending.commit().unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"replacement");
            assert_eq!(names_in(dir.path()), ["out"], "{strategy:?}");
        }
    }

    #[test]
    fn commit_new_refuses_an_existing_destination_and_keeps_it() {
        for strategy in [Strategy::Unnamed, Strategy::Named] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("security.json");
            let mut first = PendingFile::create_with(&dest, strategy).unwrap();
            first.write_all(b"first").unwrap();
            // Another writer gets there between our create and our commit.
            let mut second = PendingFile::create_with(&dest, strategy).unwrap();
            second.write_all(b"second").unwrap();
            second.commit_new().unwrap();
            let err = first.commit_new().unwrap_err();
            assert!(
                matches!(&err, FsError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
                "{strategy:?}: {err:?}"
            );
            assert_eq!(fs::read(&dest).unwrap(), b"second");
            assert_eq!(names_in(dir.path()), ["security.json"], "{strategy:?}");
        }
    }

    // Security regression (issue 11): a process killed while writing must leave no file that
    // holds part of the output. With O_TMPFILE the output has no name at all until commit.
    #[test]
    fn pending_output_has_no_name_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("plain.txt");
        let mut pending = PendingFile::create(&dest).unwrap();
        assert_eq!(pending.body, Body::Unnamed, "O_TMPFILE expected on Linux");
        pending.write_all(b"decrypted plaintext").unwrap();
        assert!(names_in(dir.path()).is_empty());
        pending.commit().unwrap();
        assert_eq!(names_in(dir.path()), ["plain.txt"]);
    }

    // Security regression (issue 11): temporaries left by killed runs are removed by the next
    // run — only ours, only for this destination, only when no live writer holds them.
    #[test]
    fn stale_temporaries_of_earlier_runs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        let make = |name: &str| {
            let path = dir.path().join(name);
            let file = create_private_new(&path).unwrap();
            file.set_modified(old).unwrap();
            file
        };
        drop(make(".out.0123456789ab.tmp"));
        let live = Flock::lock(make(".out.ba9876543210.tmp"), FlockArg::LockExclusive).unwrap();
        drop(make(".other.0123456789ab.tmp"));
        drop(make(".out.xyz.tmp"));
        drop(make("out"));
        std::os::unix::fs::symlink("/nonexistent", dir.path().join(".out.aaaaaaaaaaaa.tmp"))
            .unwrap();

        let pending = PendingFile::create_with(&dest, Strategy::Named).unwrap();
        let Body::Named(temp) = &pending.body else {
            unreachable!()
        };
        let mine = temp.file_name().unwrap().to_string_lossy().into_owned();
        let mut expected = vec![
            ".other.0123456789ab.tmp".to_string(),
            ".out.aaaaaaaaaaaa.tmp".into(),
            ".out.ba9876543210.tmp".into(),
            ".out.xyz.tmp".into(),
            "out".into(),
            mine,
        ];
        expected.sort();
        assert_eq!(names_in(dir.path()), expected);
        // A second writer for the same destination leaves the first one's temporary alone.
        let second = PendingFile::create_with(&dest, Strategy::Named).unwrap();
        assert_eq!(names_in(dir.path()).len(), expected.len() + 1);
        drop(second);
        drop(pending);
        drop(live);
        PendingFile::create(&dest).unwrap();
        assert_eq!(
            names_in(dir.path()),
            [
                ".other.0123456789ab.tmp",
                ".out.aaaaaaaaaaaa.tmp",
                ".out.xyz.tmp",
                "out"
            ]
        );
    }

    #[test]
    fn a_missing_directory_is_reported_under_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("missing/out.sealed");
        for strategy in [Strategy::Unnamed, Strategy::Named] {
            let err = PendingFile::create_with(&dest, strategy).err().unwrap();
            assert!(
                matches!(&err, FsError::NoDirectory { path, .. } if path == &dest),
                "{err}"
            );
            let text = err.to_string();
            assert!(
                text.contains("out.sealed") && !text.contains(".out.sealed."),
                "{text}"
            );
        }
    }

    /// Verifies: V87
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
