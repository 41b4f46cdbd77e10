//! Where the installed runtime files are: the shared libraries and models
//! that `./setup` places under `.pagestream/`.

use std::path::{Path, PathBuf};

/// Environment variable overriding the home directory.
pub const HOME_ENV: &str = "PAGESTREAM_HOME";
/// Default home directory name, relative to the working directory.
pub const DEFAULT_HOME: &str = ".pagestream";

/// File name of the ONNX Runtime library inside `lib/`.
pub const ONNXRUNTIME_LIB: &str = "libonnxruntime.so.1.32.0";
/// File name of the PDFium library inside `lib/`.
pub const PDFIUM_LIB: &str = "libpdfium.so";

/// The directory holding `lib/` and `models/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The home given explicitly, else `.pagestream` in the working directory,
    /// else the first `.pagestream` above the running executable (so that
    /// `target/release/pagestream` finds the repository's setup).
    pub fn locate(explicit: Option<&Path>) -> Self {
        if let Some(path) = explicit {
            return Home::new(path);
        }
        let local = PathBuf::from(DEFAULT_HOME);
        if local.is_dir() {
            return Home::new(local);
        }
        let from_exe = std::env::current_exe().ok().and_then(|exe| {
            exe.ancestors().skip(1).map(|dir| dir.join(DEFAULT_HOME)).find(|dir| dir.is_dir())
        });
        Home::new(from_exe.unwrap_or(local))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn onnxruntime_lib(&self) -> PathBuf {
        self.root.join("lib").join(ONNXRUNTIME_LIB)
    }

    pub fn pdfium_lib(&self) -> PathBuf {
        self.root.join("lib").join(PDFIUM_LIB)
    }
}
