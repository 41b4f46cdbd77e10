//! Shell-style patterns for choosing files to ingest, matched against paths
//! relative to the ingested directory or prefix, with `/` between segments:
//! `*` matches within one segment, `**` any number of whole segments, `?`
//! one character; everything else matches itself.
//!
//! A pattern without `/` matches the file name at any depth (`*.pdf` is
//! `**/*.pdf`), as users of `rsync` and `.gitignore` expect.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    segments: Vec<String>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        let trimmed = pattern.trim_start_matches("./");
        let mut segments: Vec<String> = trimmed.split('/').map(str::to_string).collect();
        if !trimmed.contains('/') {
            segments.insert(0, "**".to_string());
        }
        Glob { text: pattern.to_string(), segments }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (relative, `/`-separated) matches.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let segments: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        match_segments(&segments, &parts)
    }
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(part, tail)| match_segment(first, part) && match_segments(rest, tail)),
    }
}

/// `*` and `?` within one path segment.
fn match_segment(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Which paths to take: those matching any include (all when there is
/// none) and no exclude.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
}

impl Filter {
    /// Whether `path` is taken.
    pub fn accepts(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(path)))
            && !self.exclude.iter().any(|g| g.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_stay_within_a_segment() {
        let glob = Glob::new("in/*.pdf");
        assert!(glob.matches("in/a.pdf"));
        assert!(glob.matches("in/.pdf"));
        assert!(!glob.matches("in/sub/a.pdf"));
        assert!(!glob.matches("a.pdf"));
        assert!(!glob.matches("in/a.pdfx"));
    }

    #[test]
    fn double_star_spans_segments() {
        let glob = Glob::new("scans/**/*.tif?");
        assert!(glob.matches("scans/a.tiff"));
        assert!(glob.matches("scans/2024/05/a.tiff"));
        assert!(glob.matches("scans/x/a.tifx"));
        assert!(!glob.matches("scans/a.tif"));
        assert!(!glob.matches("other/a.tiff"));
    }

    #[test]
    fn a_bare_pattern_matches_the_name_at_any_depth() {
        let glob = Glob::new("*.pdf");
        assert!(glob.matches("a.pdf"));
        assert!(glob.matches("x/y/a.pdf"));
        assert!(!glob.matches("x/a.png"));
        assert!(Glob::new("invoice-??.png").matches("2024/invoice-07.png"));
        assert!(!Glob::new("invoice-??.png").matches("invoice-7.png"));
    }

    #[test]
    fn backtracking_finds_a_later_match() {
        assert!(match_segment("*a*b", "xaxxab"));
        assert!(match_segment("a*", "a"));
        assert!(!match_segment("*a*b", "xaxxa"));
        assert!(match_segment("**", "anything"));
    }

    #[test]
    fn filter_takes_includes_minus_excludes() {
        let filter = Filter {
            include: vec![Glob::new("*.pdf"), Glob::new("*.png")],
            exclude: vec![Glob::new("drafts/**")],
        };
        assert!(filter.accepts("a.pdf"));
        assert!(filter.accepts("x/b.png"));
        assert!(!filter.accepts("c.txt"));
        assert!(!filter.accepts("drafts/a.pdf"));
        assert!(Filter::default().accepts("anything/at/all"));
    }
}
