//! Medians: each figure in `results/` is the median of its runs, so one
//! disturbed run out of three moves nothing.

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
    fn nothing_has_no_median() {
        assert_eq!(median([]), None);
        assert_eq!(median([f64::NAN]), None);
        assert_eq!(median([f64::NAN, 7.0]), Some(7.0));
    }
}
