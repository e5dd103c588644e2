//! The figures of a run: per journey and per request, rates, latencies, errors.

use std::collections::BTreeMap;
use std::fmt::Write;

use goose::metrics::GooseMetrics;

pub struct Summary {
    /// Failed requests, plus journeys that failed on a check of a 2xx body.
    pub errors: usize,
    /// Answers with a 5xx status.
    pub server_errors: usize,
    duration: usize,
    journeys: Vec<Line>,
    requests: Vec<Line>,
    error_kinds: Vec<(String, usize)>,
    /// Tries of keyed POSTs that failed and were retried to success (request name,
    /// status or `None` for a transport error, count): not counted as errors.
    recovered: Vec<(String, Option<u16>, usize)>,
    /// The refund journey's (cancellations accepted, refunds seen), when it ran.
    pub refunds: Option<(usize, usize)>,
}

struct Line {
    name: String,
    count: usize,
    failures: usize,
    server_errors: usize,
    times: BTreeMap<usize, usize>,
    total_ms: usize,
    max_ms: usize,
}

fn percentile(times: &BTreeMap<usize, usize>, count: usize, p: f64) -> usize {
    let rank = ((count as f64) * p).ceil().max(1.0) as usize;
    let mut seen = 0;
    for (ms, n) in times {
        seen += n;
        if seen >= rank {
            return *ms;
        }
    }
    0
}

/// The summary of a finished run (takes the journeys' times recorded so far).
pub fn summarise(metrics: &GooseMetrics) -> Summary {
    let journeys = crate::journeys::journey_times()
        .into_iter()
        .map(|(name, t)| {
            let mut times = BTreeMap::new();
            for ms in &t.millis {
                *times.entry(*ms as usize).or_insert(0) += 1;
            }
            Line {
                name: name.to_owned(),
                count: t.millis.len(),
                failures: t.failures,
                server_errors: 0,
                total_ms: t.millis.iter().map(|m| *m as usize).sum(),
                max_ms: t.millis.iter().copied().max().unwrap_or(0) as usize,
                times,
            }
        })
        .collect();
    let mut requests: Vec<Line> = metrics
        .requests
        .iter()
        .map(|(name, r)| Line {
            name: name.clone(),
            count: r.raw_data.counter,
            failures: r.fail_count,
            server_errors: r
                .status_code_counts
                .iter()
                .filter(|(status, _)| **status >= 500)
                .map(|(_, n)| n)
                .sum(),
            times: r.raw_data.times.clone(),
            total_ms: r.raw_data.total_time,
            max_ms: r.raw_data.maximum_time,
        })
        .collect();
    requests.sort_by(|a, b| a.name.cmp(&b.name));
    let mut recovered = Vec::new();
    for (name, by_status) in crate::journeys::recovered() {
        // Goose names a request's line `METHOD name`.
        let suffix = format!(" {name}");
        if let Some(line) = requests
            .iter_mut()
            .find(|l| l.name == name || l.name.ends_with(&suffix))
        {
            let tries: usize = by_status.values().sum();
            let server: usize = by_status
                .iter()
                .filter(|(status, _)| status.is_some_and(|s| s >= 500))
                .map(|(_, n)| n)
                .sum();
            line.failures = line.failures.saturating_sub(tries);
            line.server_errors = line.server_errors.saturating_sub(server);
        }
        recovered.extend(by_status.into_iter().map(|(s, n)| (name.clone(), s, n)));
    }
    let request_failures: usize = requests.iter().map(|r| r.failures).sum();
    let server_errors = requests.iter().map(|r| r.server_errors).sum();
    let error_kinds = crate::journeys::failures().into_iter().collect();
    Summary {
        errors: request_failures,
        server_errors,
        duration: metrics.duration.max(1),
        journeys,
        requests,
        error_kinds,
        recovered,
        refunds: crate::journeys::refund_tally(),
    }
}

impl Summary {
    /// Every cancellation accepted was refunded (true when none ran).
    pub fn refunds_balance(&self) -> bool {
        self.refunds
            .is_none_or(|(cancellations, refunds)| cancellations == refunds)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n== loadgen: {} s ==", self.duration);
        let table = |out: &mut String, title: &str, lines: &[Line], duration: usize| {
            let _ = writeln!(
                out,
                "{title:<32} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6}",
                "count", "per s", "avg ms", "p50", "p95", "p99", "max", "errors", "5xx"
            );
            for l in lines {
                let avg = l.total_ms.checked_div(l.count).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{:<32} {:>8} {:>8.1} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6}",
                    l.name,
                    l.count,
                    l.count as f64 / duration as f64,
                    avg,
                    percentile(&l.times, l.count, 0.50),
                    percentile(&l.times, l.count, 0.95),
                    percentile(&l.times, l.count, 0.99),
                    l.max_ms,
                    l.failures,
                    l.server_errors,
                );
            }
        };
        table(&mut out, "journey", &self.journeys, self.duration);
        let _ = writeln!(out);
        table(&mut out, "request", &self.requests, self.duration);
        let total: usize = self.requests.iter().map(|r| r.count).sum();
        let _ = writeln!(
            out,
            "\nrequests: {total} ({:.1}/s), errors: {}, 5xx: {}",
            total as f64 / self.duration as f64,
            self.errors,
            self.server_errors
        );
        for (kind, n) in &self.error_kinds {
            let _ = writeln!(out, "  {n} × {kind}");
        }
        let retried: usize = self.recovered.iter().map(|(_, _, n)| n).sum();
        let _ = writeln!(
            out,
            "tries retried to success with their Idempotency-Key: {retried} (not errors)"
        );
        for (name, status, n) in &self.recovered {
            let what = status.map_or("transport error".to_owned(), |s| s.to_string());
            let _ = writeln!(out, "  {n} × {name}: {what}");
        }
        if let Some((cancellations, refunds)) = self.refunds {
            let verdict = if cancellations == refunds {
                "equal"
            } else {
                "NOT EQUAL"
            };
            let _ = writeln!(
                out,
                "cancellations accepted: {cancellations}, refunded: {refunds} ({verdict})"
            );
        }
        out
    }
}
