//! Decoded page images a process hands to a stage it serves itself.
//!
//! Every stage boundary still publishes the page (encoded image included)
//! and acknowledges its input, so a crash loses nothing and any process may
//! take the next stage. When the process that handed a page on is also the
//! one that takes it, it finds the decoded image here, under the message's
//! id, instead of fetching and decoding what it just encoded. An entry is
//! used only for exactly the encoded image it was made from; the few
//! entries whose message another process took fall out, oldest first.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use image::RgbImage;
use schemas::PageImage;

use pages::page::ReceivedImage;

/// The decoded images handed on to this process's own stages.
#[derive(Debug)]
pub struct LocalImages {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The stages this process serves: only pages bound for them are kept.
    stages: HashSet<String>,
    /// `(message id, image, what it was encoded as)`, oldest first.
    entries: VecDeque<(String, RgbImage, ReceivedImage)>,
}

impl LocalImages {
    /// Keeps at most `capacity` images.
    pub fn new(capacity: usize) -> Self {
        LocalImages { capacity, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stages this process serves.
    pub fn serve(&self, stages: impl IntoIterator<Item = String>) {
        self.state().stages = stages.into_iter().collect();
    }

    /// Whether pages handed to `stage` are kept.
    pub fn keeps(&self, stage: &str) -> bool {
        self.capacity > 0 && self.state().stages.contains(stage)
    }

    /// Keeps `image`, sent to stage `stage` as `encoded` in message `id`.
    pub fn put(&self, stage: &str, id: String, image: RgbImage, encoded: ReceivedImage) {
        let mut state = self.state();
        if self.capacity == 0 || !state.stages.contains(stage) {
            return;
        }
        while state.entries.len() >= self.capacity {
            state.entries.pop_front();
        }
        state.entries.push_back((id, image, encoded));
    }

    /// The image kept for message `id`, if it was encoded as `encoded`.
    pub fn take(&self, id: &str, encoded: &PageImage) -> Option<(RgbImage, ReceivedImage)> {
        let mut state = self.state();
        let position = state.entries.iter().position(|(kept, ..)| kept == id)?;
        let (_, image, received) = state.entries.remove(position)?;
        (received.encoded == *encoded).then_some((image, received))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use schemas::ImageEncoding;

    fn encoded(data: u8) -> ReceivedImage {
        let encoded = PageImage {
            width: 1,
            height: 1,
            encoding: ImageEncoding::Gray8Lz4,
            data: vec![data],
            blob: None,
        };
        ReceivedImage { encoded, fingerprint: u64::from(data) }
    }

    #[test]
    fn only_pages_for_served_stages_are_kept_and_only_for_their_own_encoding() {
        let local = LocalImages::new(2);
        local.serve(["ocr".to_string()]);
        let image = RgbImage::new(1, 1);
        local.put("layout", "a".into(), image.clone(), encoded(1));
        assert!(local.take("a", &encoded(1).encoded).is_none(), "layout is not served here");

        local.put("ocr", "b".into(), image.clone(), encoded(2));
        assert!(local.take("b", &encoded(3).encoded).is_none(), "another encoding");
        assert!(local.take("b", &encoded(2).encoded).is_none(), "taken (and dropped) once");

        for (id, data) in [("c", 4), ("d", 5), ("e", 6)] {
            local.put("ocr", id.into(), image.clone(), encoded(data));
        }
        assert!(local.take("c", &encoded(4).encoded).is_none(), "the oldest fell out");
        assert!(local.take("e", &encoded(6).encoded).is_some());
    }
}
