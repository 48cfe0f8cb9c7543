//! Latency histograms and /proc sampling of the servers under test.

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A latency histogram in microseconds (1 µs .. 10 min, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.max(1));
}

/// p50/p90/p99/max in milliseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean() / 10.0).round() / 100.0,
    })
}

pub fn human_latency(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    let f = |v: u64| format!("{:.2}", v as f64 / 1000.0);
    format!(
        "p50 {} p90 {} p99 {} max {} ms",
        f(h.value_at_quantile(0.5)),
        f(h.value_at_quantile(0.9)),
        f(h.value_at_quantile(0.99)),
        f(h.max())
    )
}

/// `--pid KIND=PID`: the processes whose CPU time (and RSS) a run reports, by kind.
#[derive(Debug, Clone)]
pub struct Procs {
    pub by_kind: BTreeMap<String, Vec<u32>>,
}

impl Procs {
    pub fn parse(specs: &[String]) -> Result<Self> {
        let mut by_kind: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for spec in specs {
            let (kind, pid) = match spec.split_once('=') {
                Some((k, p)) => (k.to_string(), p),
                None => ("server".to_string(), spec.as_str()),
            };
            let pid: u32 = pid
                .trim()
                .parse()
                .map_err(|_| anyhow!("bad --pid {spec}"))?;
            by_kind.entry(kind).or_default().push(pid);
        }
        Ok(Self { by_kind })
    }

    /// CPU seconds (user + system) of every process, by kind; `bench` is this process.
    pub fn cpu(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (kind, pids) in &self.by_kind {
            let total: f64 = pids
                .iter()
                .filter_map(|p| cpu_seconds(&p.to_string()))
                .sum();
            out.insert(kind.clone(), total);
        }
        out.insert("bench".into(), cpu_seconds("self").unwrap_or(0.0));
        out
    }

    /// Resident set size in KiB, by kind.
    pub fn rss_kib(&self) -> BTreeMap<String, u64> {
        self.by_kind
            .iter()
            .map(|(kind, pids)| (kind.clone(), pids.iter().filter_map(|p| rss_kib(*p)).sum()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of /proc/<pid>/stat, in seconds (threads included).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// VmRSS of /proc/<pid>/status in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU used between two samples, by kind, with µs per unit of work (`per` = e.g.
/// delivered notifications).
pub fn cpu_report(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    per: u64,
    per_name: &str,
) -> Value {
    let mut out = Map::new();
    for (kind, a) in after {
        let b = before.get(kind).copied().unwrap_or(0.0);
        let used = (a - b).max(0.0);
        let per_unit = if per > 0 {
            used * 1e6 / per as f64
        } else {
            0.0
        };
        out.insert(
            kind.clone(),
            json!({
                "cpu_s": (used * 1000.0).round() / 1000.0,
                format!("cpu_us_per_{per_name}"): (per_unit * 100.0).round() / 100.0,
            }),
        );
    }
    Value::Object(out)
}

pub fn human_cpu(report: &Value) -> String {
    let Some(map) = report.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| format!("{k} {:.2}s", v["cpu_s"].as_f64().unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ")
}
