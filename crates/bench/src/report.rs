//! The Markdown the harness prints: tables, notes, and a verdict per target.

use std::fmt::Write as _;

/// A Markdown table.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are left empty).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.header));
        let rule: Vec<String> = self.header.iter().map(|_| "---".to_string()).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// A report section: a heading, tables and notes, built up as a scenario runs.
#[derive(Debug, Default, Clone)]
pub struct Section {
    text: String,
}

impl Section {
    /// A section with this heading.
    pub fn new(heading: &str) -> Self {
        Self {
            text: format!("## {heading}\n\n"),
        }
    }

    /// Adds a paragraph.
    pub fn note(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.text, "{}\n", text.as_ref());
    }

    /// Adds a table.
    pub fn table(&mut self, table: &Table) {
        let _ = writeln!(self.text, "{}", table.render());
    }

    /// Adds a target with its verdict: `- [x] MET: ...` or `- [ ] MISSED: ...`.
    pub fn target(&mut self, met: bool, what: impl AsRef<str>) {
        let mark = if met { "MET" } else { "MISSED" };
        let _ = writeln!(self.text, "- **{mark}**: {}", what.as_ref());
    }

    /// Ends a list of targets.
    pub fn end_list(&mut self) {
        self.text.push('\n');
    }

    /// The Markdown.
    pub fn render(&self) -> &str {
        &self.text
    }
}

/// `a / b` as `0.97×`, or `n/a`.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown() {
        let mut t = Table::new(["a", "b"]);
        t.row(["1"]);
        assert_eq!(t.render(), "| a | b |\n| --- | --- |\n| 1 |  |\n");
        assert_eq!(ratio(1.0, 2.0), "0.50×");
        assert_eq!(ratio(1.0, 0.0), "n/a");
    }
}
