//! The bytes behind a model file: mapped from disk, or already in memory
//! (tests, fuzzing, files read some other way).

use memmap2::Mmap;

/// A whole file's bytes.
pub(crate) enum Storage {
    /// A read-only private map of the file.
    Mapped(Mmap),
    /// Bytes owned in memory.
    Owned(Vec<u8>),
}

impl Storage {
    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(map) => map,
            Self::Owned(bytes) => bytes,
        }
    }
}
