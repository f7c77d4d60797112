//! Subscriptions: run a plan every interval and deliver only what changed.
//!
//! The rules are those of `Connection.subscribe` in `bifrost/connection.py`: the first batch holds
//! every tag; after that a number is reported when it moved by more than the deadband from the
//! value last *reported* (so a slow drift is reported once it adds up), anything else when it
//! differs. Two deliberate additions: a tag whose read fails is reported with its error (once per
//! distinct error, and again when it recovers), and a number turning into NaN, or back, counts as a
//! change (Python's `abs(new - old) > deadband` is false for NaN and would hide it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::values::Value;

use super::error::Error;
use super::plan::{ReadPlan, Readings};
use super::Client;

/// How a subscription polls.
#[derive(Debug, Clone, PartialEq)]
pub struct PollOptions {
    /// From the start of one poll to the start of the next (a poll that overruns delays the next).
    pub interval: Duration,
    /// A number must move by more than this to be reported (0: any change).
    pub deadband: f64,
    /// Per-tag deadbands, in plan order; replaces `deadband` when given.
    pub tag_deadbands: Option<Vec<f64>>,
    /// Batches buffered for a slow consumer; when full, polling waits (nothing is lost: changes
    /// are measured against what was last delivered).
    pub buffer: usize,
}

impl PollOptions {
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            deadband: 0.0,
            tag_deadbands: None,
            buffer: 16,
        }
    }

    #[must_use]
    pub fn with_deadband(mut self, deadband: f64) -> Self {
        self.deadband = deadband;
        self
    }
}

/// The tags that changed in one poll: `tags[i]` (an index into the plan's tags) now reads
/// `values[i]`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub timestamp: SystemTime,
    pub tags: Vec<usize>,
    pub values: Vec<Result<Value, Error>>,
}

impl Batch {
    #[must_use]
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

/// A running subscription. Dropping it (or calling `stop`) ends the poll loop.
#[derive(Debug)]
pub struct Subscription {
    receiver: mpsc::Receiver<Batch>,
    task: JoinHandle<()>,
}

impl Subscription {
    /// The next batch; `None` once the subscription ended (stopped, or the client closed).
    pub async fn next(&mut self) -> Option<Batch> {
        self.receiver.recv().await
    }

    /// The channel the batches arrive on (for `select!` or `poll_recv`).
    pub fn receiver(&mut self) -> &mut mpsc::Receiver<Batch> {
        &mut self.receiver
    }

    /// End the poll loop now; batches already delivered can still be received.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn(client: &Client, plan: ReadPlan, options: PollOptions) -> Subscription {
    let (sender, receiver) = mpsc::channel(options.buffer.max(1));
    let task = client
        .runtime()
        .spawn(run(client.clone(), plan, options, sender));
    Subscription { receiver, task }
}

async fn run(client: Client, plan: ReadPlan, options: PollOptions, sender: mpsc::Sender<Batch>) {
    let mut filter = ChangeFilter::new(plan.tags().len(), options.deadband, options.tag_deadbands);
    let mut ticker = tokio::time::interval(options.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let readings = client.execute(&plan).await;
        let closed = readings
            .errors
            .iter()
            .flatten()
            .any(|e| matches!(e, Error::Closed { .. }));
        let batch = filter.batch(&plan, &readings);
        if !batch.is_empty() && sender.send(batch).await.is_err() {
            return; // nobody listens any more
        }
        if closed {
            return;
        }
    }
}

/// Remembers what was last reported per tag and decides what to report next.
#[derive(Debug, Clone)]
pub struct ChangeFilter {
    last: Vec<Option<Result<Value, Arc<str>>>>,
    deadband: f64,
    tag_deadbands: Option<Vec<f64>>,
}

impl ChangeFilter {
    #[must_use]
    pub fn new(tags: usize, deadband: f64, tag_deadbands: Option<Vec<f64>>) -> Self {
        Self {
            last: vec![None; tags],
            deadband,
            tag_deadbands,
        }
    }

    fn deadband(&self, tag: usize) -> f64 {
        self.tag_deadbands
            .as_ref()
            .and_then(|d| d.get(tag).copied())
            .unwrap_or(self.deadband)
    }

    /// Whether `new` is worth reporting for `tag`; if so, it becomes the last reported.
    pub fn offer(&mut self, tag: usize, new: Result<&Value, &Error>) -> bool {
        let deadband = self.deadband(tag);
        let report = match (&self.last[tag], new) {
            (None, _) | (Some(Ok(_)), Err(_)) | (Some(Err(_)), Ok(_)) => true,
            (Some(Ok(old)), Ok(new)) => changed(old, new, deadband),
            (Some(Err(old)), Err(new)) => **old != *new.to_string(),
        };
        if report {
            self.last[tag] = Some(match new {
                Ok(value) => Ok(value.clone()),
                Err(error) => Err(error.to_string().into()),
            });
        }
        report
    }

    /// `value` was reported for `tag` by other means (a read that went around the filter): it
    /// is the last reported from now on.
    pub fn remember(&mut self, tag: usize, value: Value) {
        if let Some(slot) = self.last.get_mut(tag) {
            *slot = Some(Ok(value));
        }
    }

    /// The batch of what changed in `readings`.
    #[must_use]
    pub fn batch(&mut self, plan: &ReadPlan, readings: &Readings) -> Batch {
        let mut tags = Vec::new();
        let mut values = Vec::new();
        for tag in 0..plan.tags().len() {
            let result = readings.get(plan, tag);
            if self.offer(tag, result) {
                tags.push(tag);
                values.push(result.cloned().map_err(Clone::clone));
            }
        }
        Batch {
            timestamp: readings.timestamp,
            tags,
            values,
        }
    }
}

/// Python's rule: numbers by more than the deadband, everything else by equality.
fn changed(old: &Value, new: &Value, deadband: f64) -> bool {
    match (old, new) {
        (Value::Int(a), Value::Int(b)) => match b.checked_sub(*a) {
            Some(delta) => delta.unsigned_abs() as f64 > deadband,
            None => true,
        },
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (a, b) = (as_f64(old), as_f64(new));
            if a.is_nan() || b.is_nan() {
                return a.is_nan() != b.is_nan();
            }
            (b - a).abs() > deadband
        }
        _ => old != new,
    }
}

fn as_f64(value: &Value) -> f64 {
    match value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(_) => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::needless_pass_by_value)] // reads better at the call sites
    fn offer(filter: &mut ChangeFilter, value: Value) -> bool {
        filter.offer(0, Ok(&value))
    }

    #[test]
    fn deadband_is_measured_from_the_last_report() {
        let mut filter = ChangeFilter::new(1, 0.5, None);
        assert!(
            offer(&mut filter, Value::Float(10.0)),
            "the first value is always reported"
        );
        assert!(!offer(&mut filter, Value::Float(10.3)));
        assert!(
            !offer(&mut filter, Value::Float(10.5)),
            "exactly the deadband is not beyond it"
        );
        assert!(
            offer(&mut filter, Value::Float(10.6)),
            "drift adds up against the last report"
        );
        assert!(!offer(&mut filter, Value::Float(10.2)));
        assert!(
            offer(&mut filter, Value::Int(10)),
            "ints and floats compare as numbers"
        );
    }

    #[test]
    fn zero_deadband_reports_any_change_and_non_numbers_by_equality() {
        let mut filter = ChangeFilter::new(1, 0.0, None);
        assert!(offer(&mut filter, Value::Int(i128::from(u64::MAX))));
        assert!(!offer(&mut filter, Value::Int(i128::from(u64::MAX))));
        assert!(
            offer(&mut filter, Value::Int(i128::from(u64::MAX) - 1)),
            "exact for big ints"
        );
        let mut flags = ChangeFilter::new(1, 100.0, None);
        assert!(offer(&mut flags, Value::Bool(false)));
        assert!(!offer(&mut flags, Value::Bool(false)));
        assert!(
            offer(&mut flags, Value::Bool(true)),
            "a deadband does not apply to bools"
        );
        let mut text = ChangeFilter::new(1, 100.0, None);
        assert!(offer(&mut text, Value::Str("a".into())));
        assert!(offer(&mut text, Value::Str("b".into())));
    }

    #[test]
    fn nan_transitions_are_changes() {
        let mut filter = ChangeFilter::new(1, 1.0, None);
        assert!(offer(&mut filter, Value::Float(1.0)));
        assert!(offer(&mut filter, Value::Float(f64::NAN)));
        assert!(!offer(&mut filter, Value::Float(f64::NAN)));
        assert!(offer(&mut filter, Value::Float(1.0)));
    }

    #[test]
    fn errors_are_reported_once_and_recovery_again() {
        let device: Arc<str> = Arc::from("dev");
        let timeout = Error::Timeout {
            device: Arc::clone(&device),
            unit: 1,
            function: 3,
            after: Duration::from_secs(1),
        };
        let closed = Error::Closed { device };
        let mut filter = ChangeFilter::new(1, 0.0, None);
        assert!(offer(&mut filter, Value::Int(1)));
        assert!(filter.offer(0, Err(&timeout)));
        assert!(!filter.offer(0, Err(&timeout)));
        assert!(filter.offer(0, Err(&closed)));
        assert!(
            offer(&mut filter, Value::Int(1)),
            "a recovery is reported even if unchanged"
        );
    }

    #[test]
    fn per_tag_deadbands_replace_the_common_one() {
        let mut filter = ChangeFilter::new(2, 10.0, Some(vec![0.0, 5.0]));
        assert!(filter.offer(0, Ok(&Value::Float(0.0))));
        assert!(filter.offer(1, Ok(&Value::Float(0.0))));
        assert!(filter.offer(0, Ok(&Value::Float(0.1))));
        assert!(!filter.offer(1, Ok(&Value::Float(4.0))));
        assert!(filter.offer(1, Ok(&Value::Float(6.0))));
    }
}
