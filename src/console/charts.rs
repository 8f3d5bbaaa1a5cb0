//! Small inline SVG bar charts: one bar per minute of the last hour.

use maud::{Markup, html};

const WIDTH: u32 = 240;
const HEIGHT: u32 = 48;

/// A bar chart of `counts` (oldest first) under `label`, with the total and the peak.
pub fn minutes(label: &str, counts: &[u64]) -> Markup {
    let peak = counts.iter().copied().max().unwrap_or(0);
    let total: u64 = counts.iter().sum();
    let bar = f64::from(WIDTH) / counts.len().max(1) as f64;
    html! {
        div.chart {
            div { strong { (label) } " " span.muted { (total) " in the last hour, peak " (peak) "/min" } }
            svg width=(WIDTH) height=(HEIGHT) viewBox={"0 0 " (WIDTH) " " (HEIGHT)}
                role="img" aria-label={(label) " per minute, last hour"} {
                rect x="0" y="0" width=(WIDTH) height=(HEIGHT) fill="#f0f3f7" {}
                @for (i, count) in counts.iter().enumerate() {
                    @if *count > 0 {
                        @let height = (*count as f64 / peak as f64 * f64::from(HEIGHT - 2)).max(1.0);
                        rect x=(format!("{:.1}", i as f64 * bar)) y=(format!("{:.1}", f64::from(HEIGHT) - height))
                            width=(format!("{:.1}", (bar - 0.5).max(0.5))) height=(format!("{height:.1}"))
                            fill="#1d4ed8" {
                            title { (count) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_one_bar_per_busy_minute() {
        let svg = minutes("acked", &[0, 3, 0, 6]).into_string();
        assert_eq!(svg.matches("fill=\"#1d4ed8\"").count(), 2);
        assert!(svg.contains("9 in the last hour, peak 6/min"));
    }
}
