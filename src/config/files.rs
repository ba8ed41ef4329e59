//! Reading the small files a config names (kubeconfigs, token files, certificates and keys) with a size
//! cap, and never a FIFO: opening one blocks the reader until a writer comes, and `/dev/zero` would never
//! end without the cap.

use std::io::{self, Read};
use std::path::Path;

/// The largest kubeconfig, CA bundle, certificate or key file read.
pub(crate) const MAX_CONFIG_FILE: u64 = 16 * 1024 * 1024;
/// The largest bearer token file read (service-account tokens are about a kilobyte).
pub(crate) const MAX_TOKEN_FILE: u64 = 1024 * 1024;

/// The contents of `path`, at most `limit` bytes: a regular file, or a device such as `/dev/null` (read
/// within the same cap, so `/dev/zero` ends too). A FIFO, a socket or a directory is refused before it
/// is opened: opening a FIFO blocks until a writer appears.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    if !readable_kind(&std::fs::metadata(path)?) {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path)?;
    if !readable_kind(&file.metadata()?) {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {}", human(limit)),
        ));
    }
    Ok(bytes)
}

/// A regular file, or (on Unix) a character or block device.
fn readable_kind(m: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        t.is_file() || t.is_char_device() || t.is_block_device()
    }
    #[cfg(not(unix))]
    {
        m.is_file()
    }
}

/// [`read_bounded`] as UTF-8 text.
pub(crate) fn read_bounded_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a directory, a FIFO or a socket): refusing to read it",
    )
}

fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_cap_are_read_and_nothing_else_is() {
        let dir = std::env::temp_dir().join(format!("kube-elector-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(read_bounded(&small, 3).unwrap(), b"abc");
        let err = read_bounded(&small, 2).unwrap_err();
        assert!(err.to_string().contains("larger than 2 bytes"), "{err}");
        let err = read_bounded(&dir, 10).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = read_bounded(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(err.to_string().contains("larger than 10 bytes"), "{err}");
        assert!(read_bounded(Path::new("/dev/null"), 10).unwrap().is_empty());
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        assert!(read_bounded_text(&small, 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
