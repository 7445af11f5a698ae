//! When an open-loop stream sends its batches: the offered rate over time, constant or a ramp of
//! linear pieces, shared evenly by the streams and turned into send times.
//!
//! ```text
//!  tx/s ▲        ┌──────        rate points (0 s, 200) (10 s, 1500) (20 s, 1500) …
//!       │      ╱                one stream offers rate/streams; its batch k leaves when what it
//!       │    ╱                  has been offered since it started reaches (k + offset) × batch
//!       │──╱
//!       └──────────────► s
//! ```
//!
//! Pure arithmetic over seconds, so the open loop and its tests share it.

/// Send times of the open loop's streams.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// (seconds after the load starts, tx/s of one stream), time strictly increasing, the first
    /// at 0; linear in between, the last rate held.
    points: Vec<(f64, f64)>,
    batch: f64,
}

impl Schedule {
    /// `points` (seconds, tx/s over all `streams`; see [`crate::scenario::LoadSpec::rate_points`])
    /// shared by `streams` streams sending `batch` transactions at a time.
    pub fn new(points: &[(f64, f64)], streams: usize, batch: usize) -> Schedule {
        let share = streams.max(1) as f64;
        let mut points: Vec<(f64, f64)> = points.iter().map(|&(t, r)| (t, r.max(0.0) / share)).collect();
        if points.first().is_none_or(|p| p.0 > 0.0) {
            points.insert(0, (0.0, points.first().map_or(0.0, |p| p.1)));
        }
        Schedule { points, batch: batch.max(1) as f64 }
    }

    /// One stream's rate at `t` seconds.
    pub fn rate(&self, t: f64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= t).saturating_sub(1);
        match self.points.get(i + 1) {
            Some(&(t1, r1)) => {
                let (t0, r0) = self.points[i];
                r0 + (r1 - r0) * (t - t0).max(0.0) / (t1 - t0)
            }
            None => self.points[i].1,
        }
    }

    /// Transactions one stream is offered from the start until `t` seconds.
    pub fn offered(&self, t: f64) -> f64 {
        let mut total = 0.0;
        for (i, &(t0, r0)) in self.points.iter().enumerate() {
            if t <= t0 {
                break;
            }
            let end = self.points.get(i + 1).map_or(t, |p| p.0.min(t));
            total += (r0 + self.rate(end)) / 2.0 * (end - t0);
        }
        total
    }

    /// When (seconds after the load starts) batch `k` of a stream that starts at `from_s` leaves:
    /// when what it has been offered since reaches `(k + offset) × batch` (`offset` in [0, 1)
    /// staggers the streams). `None` when the rate drops to 0 before.
    pub fn at(&self, k: usize, offset: f64, from_s: f64) -> Option<f64> {
        let target = self.offered(from_s) + (k as f64 + offset) * self.batch;
        let mut done = 0.0;
        for (i, &(t0, r0)) in self.points.iter().enumerate() {
            let Some(&(t1, r1)) = self.points.get(i + 1) else {
                // The last rate holds for ever.
                let need = target - done;
                return if need <= 0.0 {
                    Some(t0)
                } else if r0 > 0.0 {
                    Some(t0 + need / r0)
                } else {
                    None
                };
            };
            let piece = (r0 + r1) / 2.0 * (t1 - t0);
            if done + piece >= target {
                // a τ + m τ² / 2 = d, in the form that stays exact when the slope m is 0.
                let d = (target - done).max(0.0);
                let m = (r1 - r0) / (t1 - t0);
                let root = (r0 * r0 + 2.0 * m * d).max(0.0).sqrt();
                let tau = if r0 + root > 0.0 { 2.0 * d / (r0 + root) } else { 0.0 };
                return Some(t0 + tau.min(t1 - t0));
            }
            done += piece;
        }
        None
    }

    /// Batches a stream that starts at 0 sends within `duration_s`, and one spare.
    pub fn batches(&self, duration_s: f64) -> usize {
        (self.offered(duration_s) / self.batch).ceil() as usize + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_constant_rate_sends_evenly_and_staggers_the_streams() {
        // 400 tx/s over 4 streams: 100 tx/s each, a batch of 50 every 0.5 s.
        let s = Schedule::new(&[(0.0, 400.0)], 4, 50);
        for k in 0..10 {
            assert!(close(s.at(k, 0.0, 0.0).unwrap(), k as f64 * 0.5));
            assert!(close(s.at(k, 0.5, 0.0).unwrap(), k as f64 * 0.5 + 0.25), "half a batch later");
        }
        assert_eq!(s.batches(10.0), 21);
        // A stream that starts at 3 s sends its first batch then.
        assert!(close(s.at(0, 0.0, 3.0).unwrap(), 3.0));
        assert!(close(s.at(2, 0.0, 3.0).unwrap(), 4.0));
    }

    #[test]
    fn a_ramp_sends_what_its_rate_integrates_to() {
        // 200 tx/s rising to 1000 tx/s over 10 s, then held; one stream, batches of 10.
        let s = Schedule::new(&[(0.0, 200.0), (10.0, 1000.0)], 1, 10);
        assert!(close(s.rate(5.0), 600.0));
        assert!(close(s.rate(30.0), 1000.0));
        assert!(close(s.offered(10.0), 6000.0), "the ramp's area: (200 + 1000) / 2 × 10");
        assert!(close(s.offered(12.0), 8000.0));
        // Every batch leaves when the offered count reaches it, in order, denser as the rate rises.
        let times: Vec<f64> = (0..900).map(|k| s.at(k, 0.0, 0.0).unwrap()).collect();
        for (k, t) in times.iter().enumerate() {
            assert!((s.offered(*t) - k as f64 * 10.0).abs() < 1e-6, "batch {k} at {t}");
        }
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        let gap = |t: f64| {
            let k = times.iter().position(|x| *x >= t).unwrap();
            times[k + 1] - times[k]
        };
        assert!(gap(1.0) > 2.5 * gap(9.0), "batches come faster as the rate rises");
        assert_eq!(s.batches(12.0), 801);
    }

    #[test]
    fn a_ramp_down_to_zero_stops_the_stream() {
        let s = Schedule::new(&[(0.0, 100.0), (2.0, 0.0)], 1, 10);
        assert!(close(s.offered(5.0), 100.0));
        assert!(s.at(9, 0.0, 0.0).unwrap() <= 2.0);
        assert_eq!(s.at(10, 0.5, 0.0), None, "nothing is offered after the rate reached 0");
        // From zero up: the first batches wait for the rate to build.
        let up = Schedule::new(&[(0.0, 0.0), (10.0, 100.0)], 1, 10);
        assert!(close(up.at(0, 0.0, 0.0).unwrap(), 0.0));
        assert!(close(up.at(50, 0.0, 0.0).unwrap(), 10.0), "500 tx are offered by 10 s");
    }
}
