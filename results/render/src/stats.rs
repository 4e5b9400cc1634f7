//! Medians and spreads: each figure in `results/` is the median of its
//! runs, so one disturbed run out of three moves nothing, and each chart
//! shows the lowest and highest run beside it, so that a reader sees how
//! far apart the runs were.

/// The lowest, median and highest of a figure over the runs of a case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// The spread of `values`, ignoring NaNs; `None` when nothing is left.
pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    Some(Spread {
        min: values.iter().copied().reduce(f64::min)?,
        median: median(values.iter().copied())?,
        max: values.iter().copied().reduce(f64::max)?,
    })
}

/// The median of `values`, ignoring NaNs; the mean of the middle two when
/// the count is even; `None` when nothing is left.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_counts_take_the_middle_value() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([5.0]), Some(5.0));
        // One wild run out of three does not move the median.
        assert_eq!(median([100.0, 1e9, 101.0]), Some(101.0));
    }

    #[test]
    fn even_counts_average_the_middle_two() {
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn a_spread_runs_from_the_lowest_run_to_the_highest() {
        assert_eq!(
            spread([3.0, 1.0, 2.0, f64::NAN]),
            Some(Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0
            })
        );
        assert_eq!(spread([f64::NAN]), None);
    }

    #[test]
    fn nothing_has_no_median() {
        assert_eq!(median([]), None);
        assert_eq!(median([f64::NAN]), None);
        assert_eq!(median([f64::NAN, 7.0]), Some(7.0));
    }
}
