//! Replay timing for `warden session play`: turns records into (delay, bytes) steps. Pure — it
//! never sleeps; the terminal player sleeps for each `delay`, then writes the bytes.
//!
//! The delay before a step is the recorded gap since the previous step (the first step's gap is
//! measured from the start of the session), capped at `idle_limit` if one is set, then divided
//! by `speed`. Capping happens before the speed change, as in `asciinema play -i … -s …`.
//! Device → technician bytes are always played; technician → device bytes and shim events
//! only if asked for. Empty chunks are skipped. The bytes are the raw recorded bytes: the
//! player writes them to the terminal unchanged, escape sequences included.

use std::time::Duration;

use super::record::{Direction, Record, RecordError};

/// Why play options were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlayError {
    #[error("speed must be a finite number greater than 0 (got {0})")]
    BadSpeed(f64),
}

/// How to play a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayOptions {
    speed: f64,
    idle_limit: Option<Duration>,
    include_input: bool,
    include_events: bool,
}

impl PlayOptions {
    /// `speed` 1.0 is real time, 2.0 twice as fast.
    pub fn new(speed: f64) -> Result<Self, PlayError> {
        if !speed.is_finite() || speed <= 0.0 {
            return Err(PlayError::BadSpeed(speed));
        }
        Ok(Self {
            speed,
            idle_limit: None,
            include_input: false,
            include_events: false,
        })
    }

    /// No pause longer than `limit` (in recorded time, before the speed change).
    pub fn idle_limit(mut self, limit: Duration) -> Self {
        self.idle_limit = Some(limit);
        self
    }

    /// Also yield technician → device bytes.
    pub fn include_input(mut self, yes: bool) -> Self {
        self.include_input = yes;
        self
    }

    /// Also yield shim events (their label as bytes).
    pub fn include_events(mut self, yes: bool) -> Self {
        self.include_events = yes;
        self
    }

    fn wants(&self, direction: Direction) -> bool {
        match direction {
            Direction::DeviceToTech => true,
            Direction::TechToDevice => self.include_input,
            Direction::Event => self.include_events,
        }
    }

    fn delay(&self, gap_us: u64) -> Duration {
        let gap = Duration::from_micros(gap_us);
        let capped = match self.idle_limit {
            Some(limit) => gap.min(limit),
            None => gap,
        };
        // `as` saturates for huge values; speed is finite and positive.
        Duration::from_nanos((capped.as_nanos() as f64 / self.speed).round() as u64)
    }
}

/// One thing for the player to do: wait `delay`, then show `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayStep {
    pub delay: Duration,
    /// Recorded time of the step, µs since the start.
    pub t_us: u64,
    pub direction: Direction,
    pub data: Vec<u8>,
}

/// Iterator of [`PlayStep`]s; stops after the end record or at the first error (yielded).
#[derive(Debug)]
pub struct Player<I> {
    records: I,
    options: PlayOptions,
    last_t: u64,
    done: bool,
}

/// Plays `records` with `options` (see the module documentation).
pub fn play<I>(records: I, options: PlayOptions) -> Player<I::IntoIter>
where
    I: IntoIterator<Item = Result<Record, RecordError>>,
{
    Player {
        records: records.into_iter(),
        options,
        last_t: 0,
        done: false,
    }
}

impl<I> Iterator for Player<I>
where
    I: Iterator<Item = Result<Record, RecordError>>,
{
    type Item = Result<PlayStep, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.records.next()? {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Record::End { .. }) => self.done = true,
                Ok(Record::Chunk(chunk)) => {
                    if chunk.data.is_empty() || !self.options.wants(chunk.direction) {
                        continue;
                    }
                    let gap = chunk.t_us.saturating_sub(self.last_t);
                    self.last_t = self.last_t.max(chunk.t_us);
                    return Some(Ok(PlayStep {
                        delay: self.options.delay(gap),
                        t_us: chunk.t_us,
                        direction: chunk.direction,
                        data: chunk.data,
                    }));
                }
            }
        }
        None
    }
}
