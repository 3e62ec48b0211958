//! Reading Prometheus' text format in tests: a scrape of `/metrics` parsed into
//! samples, looked up by name and labels.

use std::collections::BTreeMap;

/// The samples of one scrape.
///
/// ```
/// use nucleon_testkit::prometheus::Scrape;
///
/// let scrape = Scrape::parse(
///     "# TYPE hits_total counter\nhits_total{route=\"/items/{id}\",method=\"GET\"} 3\n",
/// );
/// assert_eq!(scrape.value("hits_total", &[("method", "GET"), ("route", "/items/{id}")]), Some(3.0));
/// assert_eq!(scrape.series("hits_total").len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
}

/// One sample: a name, its labels (sorted by name), a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name (`_bucket`, `_sum`, `_count` suffixes included).
    pub name: String,
    /// The labels, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Scrape {
    /// Parses a scrape; comment lines and lines it cannot read are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Self { samples }
    }

    /// The value of the sample named `name` with exactly `labels` (in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.labels == wanted)
            .map(|sample| sample.value)
    }

    /// Every sample named `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .collect()
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(k, v)| sample.labels.get(*k).is_some_and(|value| value == v))
            })
            .map(|sample| sample.value)
            .sum()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    let (name, labels) = match series.find('{') {
        Some(open) => (&series[..open], parse_labels(&series[open + 1..])?),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"}`: values are quoted, with `\"`, `\\` and `\n` escapes.
fn parse_labels(mut rest: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') {
            return Some(labels);
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break at,
                other => value.push(other),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &after[end + 1..];
    }
}

/// The test process's Prometheus recorder, installed on first use: render it and
/// [`Scrape::parse`] the text. Metrics recorded before it was installed are lost.
///
/// # Panics
/// When another `metrics` recorder was installed in the process first.
#[cfg(feature = "metrics")]
pub fn recorder() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .expect("no other metrics recorder in the test process");
        handle
    })
}

/// A scrape of [`recorder`].
#[cfg(feature = "metrics")]
pub fn scrape() -> Scrape {
    Scrape::parse(&recorder().render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_escapes_are_read() {
        let scrape = Scrape::parse(
            "d_bucket{route=\"/a\",le=\"0.5\"} 2\nd_bucket{route=\"/a\",le=\"+Inf\"} 3\nd_count{route=\"/a\"} 3\nq{v=\"a\\\"b,c\"} 1\nplain 4.5\n",
        );
        assert_eq!(scrape.value("d_count", &[("route", "/a")]), Some(3.0));
        assert_eq!(
            scrape.value("d_bucket", &[("route", "/a"), ("le", "+Inf")]),
            Some(3.0)
        );
        assert_eq!(scrape.value("q", &[("v", "a\"b,c")]), Some(1.0));
        assert_eq!(scrape.value("plain", &[]), Some(4.5));
        assert_eq!(scrape.sum("d_bucket", &[("route", "/a")]), 5.0);
    }
}
