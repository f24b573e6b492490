//! The one percentile used by every summary computed from a list of samples (replay's decide latency,
//! the simulation's distributions). Histograms (hdrhistogram) answer their own quantiles.

/// The `p`-quantile (0..=1) of ascending `sorted` samples, nearest rank; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[i]
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank_and_empty() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(super::percentile(&v, 0.5), 51.0);
        assert_eq!(super::percentile(&v, 0.99), 100.0);
        assert_eq!(super::percentile(&v, 1.0), 101.0);
        assert_eq!(super::percentile(&[], 0.5), 0.0);
    }
}
