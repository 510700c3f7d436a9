//! The result of a bench run: rows for the table (what, value, goal, verdict) and the same
//! figures, unrounded, in target/bench/report.json.
use serde_json::{Map, Value, json};

pub struct Row {
    pub section: &'static str,
    pub what: String,
    pub value: String,
    /// The goal and whether it is met, e.g. "<= 1.10x: met"; empty when the row has no goal.
    pub goal: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub json: Map<String, Value>,
}

/// A goal: `value` must be at most (or at least) `limit`.
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    /// "<= 1.10x: met" or "<= 1.10x: MISSED by 23%".
    pub fn judge(&self, value: f64, unit: &str) -> String {
        let (sign, limit, met) = match *self {
            Goal::AtMost(l) => ("<=", l, value <= l),
            Goal::AtLeast(l) => (">=", l, value >= l),
        };
        if !value.is_finite() {
            return format!("{sign} {limit}{unit}: not measured");
        }
        if met {
            format!("{sign} {limit}{unit}: met")
        } else {
            let by = ((value - limit) / limit).abs() * 100.0;
            format!("{sign} {limit}{unit}: MISSED by {by:.0}%")
        }
    }
}

impl Report {
    pub fn row(&mut self, section: &'static str, what: impl Into<String>, value: impl Into<String>, goal: impl Into<String>) {
        self.rows.push(Row { section, what: what.into(), value: value.into(), goal: goal.into() });
    }

    /// A row whose figure failed to be produced: the reason, instead of the figure.
    pub fn failed(&mut self, section: &'static str, what: &str, err: &anyhow::Error) {
        let why = format!("{err:#}");
        self.row(section, what, format!("FAILED: {}", why.chars().take(160).collect::<String>()), "");
        self.set(section, &format!("{what} error"), json!(why));
    }

    /// Set `report.json`'s `section.key`.
    pub fn set(&mut self, section: &str, key: &str, value: Value) {
        let entry = self.json.entry(section.to_string()).or_insert_with(|| json!({}));
        if let Value::Object(map) = entry {
            map.insert(key.to_string(), value);
        }
    }

    /// Rows that could not be measured.
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| r.value.starts_with("FAILED")).count()
    }

    /// The table, in Markdown (it reads fine on a terminal and pastes into BENCHMARKS.md).
    pub fn table(&self) -> String {
        let mut out = String::from("| section | measure | value | goal |\n|---|---|---|---|\n");
        let mut last = "";
        for r in &self.rows {
            let section = if r.section == last { "" } else { r.section };
            last = r.section;
            out.push_str(&format!("| {section} | {} | {} | {} |\n", r.what, r.value, r.goal));
        }
        out
    }
}

/// Human units.
pub fn ns(v: f64) -> String {
    match v {
        v if !v.is_finite() => "n/a".into(),
        v if v >= 1e9 => format!("{:.2} s", v / 1e9),
        v if v >= 1e6 => format!("{:.1} ms", v / 1e6),
        v if v >= 1e3 => format!("{:.1} us", v / 1e3),
        v => format!("{v:.0} ns"),
    }
}

pub fn ratio(v: f64) -> String {
    if v.is_finite() { format!("{v:.2}x") } else { "n/a".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_say_by_how_much_they_are_missed() {
        assert_eq!(Goal::AtMost(1.1).judge(1.05, "x"), "<= 1.1x: met");
        assert_eq!(Goal::AtMost(1.5).judge(3.0, "x"), "<= 1.5x: MISSED by 100%");
        assert_eq!(Goal::AtLeast(5.0).judge(2.5, "x"), ">= 5x: MISSED by 50%");
        assert_eq!(Goal::AtLeast(5.0).judge(f64::NAN, "x"), ">= 5x: not measured");
    }

    #[test]
    fn table_names_each_section_once() {
        let mut r = Report::default();
        r.row("a", "x", "1", "");
        r.row("a", "y", "2", "");
        r.row("b", "z", "3", "");
        assert_eq!(r.table().lines().filter(|l| l.starts_with("| a ")).count(), 1);
        assert_eq!(r.rows.len(), 3);
    }

    #[test]
    fn units() {
        assert_eq!(ns(1500.0), "1.5 us");
        assert_eq!(ns(2.5e9), "2.50 s");
        assert_eq!(ratio(1.234), "1.23x");
    }
}
