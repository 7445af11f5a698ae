//! A run's answers over time: per second of load, committed tx/s, batch latency and errors.
//!
//! ```text
//!  each answered submission (when, latency, committed, errors) ─► bucket by whole second since
//!  the load started ─► Sample { t_s, committed, p50_ms, p99_ms, errors } per second, gaps as 0
//! ```

use serde::Serialize;

/// One answered submission, as the series needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answered {
    /// When the answer came, seconds since the load started.
    pub at_s: f64,
    /// The batch's latency in milliseconds.
    pub ms: f64,
    /// Transactions of the batch committed in a block (valid or with a reject code).
    pub committed: u64,
    /// Transactions of the batch refused at admission or unanswered.
    pub errors: u64,
}

/// One second of a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The second: answers from `t_s` to `t_s + 1` seconds after the load started.
    pub t_s: u64,
    /// Transactions committed in this second (so, tx/s).
    pub committed: u64,
    /// Median latency of the batches with a committed transaction answered in this second (0
    /// when none).
    pub p50_ms: f64,
    /// Their 99th percentile.
    pub p99_ms: f64,
    /// Transactions refused at admission or left unanswered, counted in the second the answer
    /// (or the timeout) came.
    pub errors: u64,
}

/// The `p` quantile (0 ..= 1) of sorted values, nearest rank; 0 when there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Per-second samples of `answers`, from second 0 to the later of the last answer's second and
/// the end of `duration_s`; a second without answers is a sample of zeros.
pub fn per_second(answers: &[Answered], duration_s: f64) -> Vec<Sample> {
    let second = |at_s: f64| at_s.max(0.0).floor() as u64;
    let last_answer = answers.iter().map(|a| second(a.at_s)).max();
    let last_scheduled = (duration_s.max(0.0).ceil() as u64).saturating_sub(1);
    let seconds = last_answer.unwrap_or(0).max(last_scheduled) + 1;
    let mut samples: Vec<Sample> =
        (0..seconds).map(|t_s| Sample { t_s, committed: 0, p50_ms: 0.0, p99_ms: 0.0, errors: 0 }).collect();
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); samples.len()];
    for a in answers {
        let t = second(a.at_s) as usize;
        samples[t].committed += a.committed;
        samples[t].errors += a.errors;
        if a.committed > 0 {
            latencies[t].push(a.ms);
        }
    }
    for (s, mut l) in samples.iter_mut().zip(latencies) {
        l.sort_by(f64::total_cmp);
        s.p50_ms = percentile(&l, 0.5);
        s.p99_ms = percentile(&l, 0.99);
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(at_s: f64, ms: f64, committed: u64, errors: u64) -> Answered {
        Answered { at_s, ms, committed, errors }
    }

    #[test]
    fn answers_land_in_their_second_with_its_own_latencies() {
        let answers = [a(0.2, 10.0, 50, 0), a(0.9, 30.0, 50, 0), a(2.5, 200.0, 40, 10), a(2.6, 0.0, 0, 50)];
        let s = per_second(&answers, 3.0);
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].t_s, s[0].committed, s[0].errors), (0, 100, 0));
        assert_eq!((s[0].p50_ms, s[0].p99_ms), (30.0, 30.0));
        assert_eq!(s[1], Sample { t_s: 1, committed: 0, p50_ms: 0.0, p99_ms: 0.0, errors: 0 });
        // The batch with nothing committed counts its errors but not its latency.
        assert_eq!((s[2].committed, s[2].errors, s[2].p50_ms), (40, 60, 200.0));
    }

    #[test]
    fn the_series_covers_the_duration_and_answers_after_it() {
        assert_eq!(per_second(&[], 10.0).len(), 10);
        assert_eq!(per_second(&[a(21.3, 1.0, 1, 0)], 10.0).len(), 22);
        assert_eq!(per_second(&[], 2.5).len(), 3);
    }
}
