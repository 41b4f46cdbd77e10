//! The documents a load is drawn from: every PDF, PNG, JPEG and TIFF under
//! the corpus directories. PDFs count as digital, images as scanned (a
//! scanned PDF counts as digital here; name such files in a corpus of their
//! own if it matters).
//!
//! Each submission must be a new document, or the pipeline would
//! de-duplicate it: [`Corpus::variant`] appends a few bytes after the end
//! of the file (after `%%EOF`, `IEND`, the JPEG end marker, or the TIFF
//! directories), which every reader ignores, so the content is the same
//! and the document id is new.

use std::path::{Path, PathBuf};

use pages::steps::split;
use schemas::DocumentKind;

use crate::scenario::{Mix, Random};

/// One document of the corpus.
#[derive(Debug, Clone)]
pub struct Sample {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub kind: DocumentKind,
    pub pages: u32,
}

impl Sample {
    pub fn is_digital(&self) -> bool {
        self.kind == DocumentKind::Pdf
    }

    /// The file name.
    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// Why the corpus cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("no {what} document in {dirs}")]
    Empty { what: &'static str, dirs: String },
}

/// The documents of the corpus, by kind.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub digital: Vec<Sample>,
    pub scanned: Vec<Sample>,
}

impl Corpus {
    /// Every document under `dirs` that the pipeline accepts under `limits`
    /// (others are left out with a warning). PDFium must be initialised.
    pub fn load(dirs: &[PathBuf], limits: &split::Config) -> Result<Corpus, CorpusError> {
        let mut corpus = Corpus::default();
        for dir in dirs {
            let mut paths = Vec::new();
            collect(dir, &mut paths)
                .map_err(|source| CorpusError::Read { path: dir.display().to_string(), source })?;
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(&path).map_err(|source| CorpusError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let checked = split::sniff(&bytes)
                    .and_then(|kind| Ok((kind, split::validate(kind, &bytes, limits)?)));
                match checked {
                    Ok((kind, pages)) => {
                        let sample = Sample { path, bytes, kind, pages };
                        match sample.is_digital() {
                            true => corpus.digital.push(sample),
                            false => corpus.scanned.push(sample),
                        }
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error.message, "not in the corpus")
                    }
                }
            }
        }
        Ok(corpus)
    }

    /// Checks that `mix` can be drawn from the corpus.
    pub fn check(&self, mix: &Mix, dirs: &[PathBuf]) -> Result<(), CorpusError> {
        let dirs = || dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        if mix.digital > 0.0 && self.digital.is_empty() {
            return Err(CorpusError::Empty { what: "digital (PDF)", dirs: dirs() });
        }
        if mix.digital < 1.0 && self.scanned.is_empty() {
            return Err(CorpusError::Empty { what: "scanned (image)", dirs: dirs() });
        }
        Ok(())
    }

    /// Draws `count` samples with the share of digital ones of `mix`.
    pub fn draw<'c>(&'c self, mix: &Mix, count: usize, random: &mut Random) -> Vec<&'c Sample> {
        (0..count)
            .map(|_| {
                let pool =
                    if random.next_f64() < mix.digital { &self.digital } else { &self.scanned };
                let pool = if pool.is_empty() { &self.digital } else { pool };
                let index = ((random.next_f64() * pool.len() as f64) as usize).min(pool.len() - 1);
                &pool[index]
            })
            .collect()
    }

    /// The bytes of `sample` made unique by a trailer naming `run` and `n`.
    pub fn variant(sample: &Sample, run: &str, n: usize) -> Vec<u8> {
        let mut bytes = sample.bytes.clone();
        bytes.extend_from_slice(format!("\n% pagestream-loadtest {run} {n}\n").as_bytes());
        bytes
    }
}

fn collect(dir: &Path, paths: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, paths)?;
        } else {
            let extension = path.extension().map(|e| e.to_string_lossy().to_lowercase());
            if matches!(extension.as_deref(), Some("pdf" | "png" | "jpg" | "jpeg" | "tif" | "tiff"))
            {
                paths.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn samples_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples")
    }

    fn corpus() -> Corpus {
        let home =
            pages::home::Home::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pagestream"));
        pages::pdf::init(&home.pdfium_lib()).unwrap();
        Corpus::load(&[samples_dir()], &split::Config::default()).unwrap()
    }

    #[test]
    fn the_samples_hold_digital_and_scanned_documents() {
        let corpus = corpus();
        let names = |samples: &[Sample]| samples.iter().map(Sample::name).collect::<Vec<_>>();
        assert_eq!(names(&corpus.digital), ["invoice.pdf", "report.pdf"]);
        assert_eq!(names(&corpus.scanned), ["fax.tiff", "scan-letter.png"]);
        assert_eq!(corpus.digital[1].pages, 2);
        assert_eq!(corpus.scanned[0].pages, 3);
    }

    #[test]
    fn variants_are_new_documents_the_pipeline_still_reads_alike() {
        let corpus = corpus();
        for sample in corpus.digital.iter().chain(&corpus.scanned) {
            let variant = Corpus::variant(sample, "run", 3);
            assert_ne!(variant, sample.bytes);
            assert_ne!(variant, Corpus::variant(sample, "run", 4));
            let kind = split::sniff(&variant).unwrap();
            let pages = split::validate(kind, &variant, &split::Config::default()).unwrap();
            assert_eq!((kind, pages), (sample.kind, sample.pages), "{}", sample.name());
        }
        // and the page images decode the same
        let letter = corpus.scanned.iter().find(|s| s.name() == "scan-letter.png").unwrap();
        let original = image::load_from_memory(&letter.bytes).unwrap();
        let variant = image::load_from_memory(&Corpus::variant(letter, "run", 1)).unwrap();
        assert_eq!(original, variant);
    }

    #[test]
    fn draws_follow_the_mix() {
        let corpus = corpus();
        let mut random = Random::new(3);
        let drawn = corpus.draw(&Mix { digital: 0.25 }, 4000, &mut random);
        let digital = drawn.iter().filter(|s| s.is_digital()).count() as f64 / 4000.0;
        assert!((digital - 0.25).abs() < 0.03, "{digital}");
        let all_digital = corpus.draw(&Mix { digital: 1.0 }, 100, &mut random);
        assert!(all_digital.iter().all(|s| s.is_digital()));
    }
}
