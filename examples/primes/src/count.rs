//! The CPU work itself: counting the primes below a number.

/// The largest `below` either role accepts: its sieve takes `below / 2` bytes (50 MB
/// here), and a few seconds of one core.
pub const MAX_BELOW: u64 = 100_000_000;

/// How many primes are below `below` (`primes_below(100) == 25`), by a sieve of
/// Eratosthenes over the odd numbers.
///
/// Pure CPU: it never waits, so on a worker's loop it holds every other request on that
/// worker until it returns. Call it through `nucleon::offload::cpu`, or on a back end.
///
/// # Panics
/// When `below` does not fit in a `usize` (a 32-bit target): keep it under
/// [`MAX_BELOW`].
///
/// ```
/// assert_eq!(primes::primes_below(100), 25);
/// assert_eq!(primes::primes_below(100_000), 9592);
/// ```
pub fn primes_below(below: u64) -> u64 {
    if below <= 2 {
        return 0;
    }
    let below = usize::try_from(below).expect("`below` fits in memory");
    // Index `i` stands for the odd number `2 i + 1`: `m / 2` is odd `m`'s index.
    let mut composite = vec![false; below / 2];
    composite[0] = true; // 1
    let mut p = 3;
    while p * p < below {
        if !composite[p / 2] {
            // p² is the first multiple no smaller prime struck out; odd multiples of p
            // are p apart in the index.
            for multiple in composite.iter_mut().skip(p * p / 2).step_by(p) {
                *multiple = true;
            }
        }
        p += 2;
    }
    // 2, and every odd number left standing.
    1 + composite.iter().filter(|c| !**c).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trial division, for checking the sieve on small numbers.
    fn is_prime(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    #[test]
    fn agrees_with_trial_division() {
        let mut count = 0;
        for below in 0..2_000 {
            assert_eq!(primes_below(below), count, "below {below}");
            if is_prime(below) {
                count += 1;
            }
        }
    }

    #[test]
    fn known_counts() {
        assert_eq!(primes_below(10), 4);
        assert_eq!(primes_below(100), 25);
        assert_eq!(primes_below(100_000), 9592);
        assert_eq!(primes_below(1_000_000), 78_498);
    }
}
