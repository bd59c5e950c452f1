//! Stop strings over streamed text: generation ends at the first stop
//! string, the text ends before it, and text that could still become a stop
//! string is held back until it cannot. [`crate::Session`]'s token stream
//! uses it, and so can a caller that samples on its own (a client driving a
//! pipeline of shard nodes).

pub struct StopText {
    stops: Vec<String>,
    /// Decoded text not yet released.
    pending: String,
}

impl StopText {
    /// Empty stop strings are ignored (they would match at once).
    pub fn new(stops: &[String]) -> StopText {
        StopText {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Add a decoded piece. Returns the text that can be shown now and
    /// whether a stop string appeared (then the text ends before it and
    /// generation is over).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first {
            self.pending.truncate(at);
            return (std::mem::take(&mut self.pending), true);
        }
        // Keep the longest suffix that is a proper prefix of a stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// The text still held back, once generation ended without a stop.
    pub fn finish(self) -> String {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::StopText;

    fn stops(s: &[&str]) -> StopText {
        StopText::new(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn text_ends_before_the_first_stop_string() {
        let mut st = stops(&["\n\n", "END"]);
        assert_eq!(st.push("Hello"), ("Hello".into(), false));
        assert_eq!(st.push(" wor"), (" wor".into(), false));
        assert_eq!(st.push("ld EN"), ("ld ".into(), false));
        assert_eq!(st.push("D more"), (String::new(), true));
    }

    #[test]
    fn a_held_prefix_is_released_when_it_cannot_stop() {
        let mut st = stops(&["END"]);
        assert_eq!(st.push("a E"), ("a ".into(), false));
        assert_eq!(st.push("Nx"), ("ENx".into(), false));
        assert_eq!(st.push("E"), (String::new(), false));
        assert_eq!(st.finish(), "E");
    }

    #[test]
    fn the_earliest_stop_wins_and_empty_stops_are_ignored() {
        let mut st = stops(&["", "b", "a"]);
        assert_eq!(st.push("xxab"), ("xx".into(), true));
        let mut none = stops(&[""]);
        assert_eq!(none.push("abc"), ("abc".into(), false));
    }
}
