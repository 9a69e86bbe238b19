//! [`BurstLog`]: says when a repeated event is worth a log line, so that a burst of the same
//! failure (a thousand refused connections, a run of `Too many open files`) gives one line
//! with a count instead of one line per event.

use std::time::Duration;

use tokio::time::Instant;

/// At most one line per [`window`](Self::new): the first event of a burst is logged at
/// once; later ones are counted and reported with the first event after the window.
#[derive(Debug)]
pub(crate) struct BurstLog {
    /// The shortest time between two lines.
    window: Duration,
    /// When the last line was allowed; `None` before the first event.
    last_line: Option<Instant>,
    /// Events seen since the last line, not yet reported.
    unreported: u64,
}

impl BurstLog {
    /// No event seen yet.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            last_line: None,
            unreported: 0,
        }
    }

    /// Counts one event at `now`. `Some(n)`: log a line now, for `n` events (this one and
    /// those held back since the last line); `None`: stay quiet, this one is counted.
    pub(crate) fn event(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.window);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_window_with_the_count_of_what_was_held_back() {
        let mut log = BurstLog::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(
            log.event(start),
            Some(1),
            "the first event is logged at once"
        );
        for ms in 1..1000 {
            assert_eq!(log.event(start + Duration::from_millis(ms)), None);
        }
        // The first event after the window reports the 999 held back and itself.
        assert_eq!(log.event(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(log.event(start + Duration::from_secs(11)), None);
        // After a quiet spell, the next burst is logged at once again.
        assert_eq!(log.event(start + Duration::from_secs(60)), Some(2));
    }
}
