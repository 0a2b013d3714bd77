//! Line charts as standalone SVG, for the benchmark's plots.
//!
//! Hand-written rather than a plotting crate: two charts with a handful of series need
//! axes, ticks, a legend and polylines, about 200 lines; `plotters` would bring a font
//! stack to measure its labels, and its SVG output differs between versions, which makes
//! the committed plots in docs/ churn.

use std::fmt::Write;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points in data coordinates, drawn in the given order.
    pub points: Vec<(f64, f64)>,
}

/// How an axis maps data to pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Linear from 0 (or the data minimum, if negative) to a rounded maximum.
    Linear,
    /// Base-10 logarithmic between the decades around the data.
    Log,
}

/// A chart: title, axes, series.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X scale.
    pub x_scale: Scale,
    /// Y scale.
    pub y_scale: Scale,
    /// Named X ticks (categorical axes); `None` for automatic numeric ticks.
    pub x_ticks: Option<Vec<(f64, String)>>,
    /// The lines.
    pub series: Vec<Series>,
}

/// Colour-blind-safe palette (Okabe-Ito), one per series in order.
const COLORS: [&str; 8] = [
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442",
];

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn fit(scale: Scale, values: impl Iterator<Item = f64>) -> Axis {
        let v: Vec<f64> = values
            .filter(|x| x.is_finite() && (scale == Scale::Linear || *x > 0.0))
            .collect();
        let (min, max) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        match scale {
            Scale::Linear => {
                let lo = if min.is_finite() { min.min(0.0) } else { 0.0 };
                let hi = if max.is_finite() && max > lo {
                    nice_ceil(max)
                } else {
                    lo + 1.0
                };
                Axis { scale, lo, hi }
            }
            Scale::Log => {
                let lo = if min.is_finite() {
                    10f64.powf(min.log10().floor())
                } else {
                    1.0
                };
                let mut hi = if max.is_finite() {
                    10f64.powf(max.log10().ceil())
                } else {
                    10.0
                };
                if hi <= lo {
                    hi = lo * 10.0;
                }
                Axis { scale, lo, hi }
            }
        }
    }

    /// Position in 0..=1 along the axis.
    fn frac(&self, x: f64) -> f64 {
        match self.scale {
            Scale::Linear => (x - self.lo) / (self.hi - self.lo),
            Scale::Log => {
                (x.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
            }
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match self.scale {
            Scale::Linear => {
                let step = nice_ceil((self.hi - self.lo) / 5.0);
                let mut t = Vec::new();
                let mut x = self.lo;
                while x <= self.hi + step * 1e-9 {
                    t.push((x, fmt_num(x)));
                    x += step;
                }
                t
            }
            Scale::Log => {
                let mut t = Vec::new();
                let mut x = self.lo;
                while x <= self.hi * 1.0001 {
                    t.push((x, fmt_num(x)));
                    x *= 10.0;
                }
                t
            }
        }
    }
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten that is >= x.
fn nice_ceil(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x * (1.0 - 1e-12) {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_num(x: f64) -> String {
    if x == x.round() && x.abs() < 1e9 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl LineChart {
    /// Renders the chart.
    pub fn render(&self) -> String {
        let xs = Axis::fit(
            self.x_scale,
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .chain(self.x_ticks.iter().flatten().map(|t| t.0)),
        );
        let ys = Axis::fit(
            self.y_scale,
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let px = |x: f64| LEFT + xs.frac(x) * pw;
        let py = |y: f64| TOP + (1.0 - ys.frac(y)) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        // Grid and ticks.
        let xticks = self.x_ticks.clone().unwrap_or_else(|| xs.ticks());
        for (x, label) in &xticks {
            let xp = px(*x);
            let _ = writeln!(
                s,
                r##"<line x1="{xp:.1}" y1="{TOP}" x2="{xp:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{xp:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                escape(label)
            );
        }
        for (y, label) in ys.ticks() {
            let yp = py(y);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yp:.1}" x2="{:.1}" y2="{yp:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                yp + 4.0,
                escape(&label)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        // Series and legend.
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<String> = series
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                pts.join(" ")
            );
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3.5" fill="{color}"/>"#);
            }
            let ly = TOP + 10.0 + 20.0 * i as f64;
            let lx = LEFT + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceil(0.7), 1.0);
        assert_eq!(nice_ceil(1.3), 2.0);
        assert_eq!(nice_ceil(2.2), 2.5);
        assert_eq!(nice_ceil(420.0), 500.0);
        assert_eq!(nice_ceil(5000.0), 5000.0);
    }

    #[test]
    fn log_axis_spans_whole_decades() {
        let a = Axis::fit(Scale::Log, [12.0, 340.0].into_iter());
        assert_eq!((a.lo, a.hi), (10.0, 1000.0));
        assert!((a.frac(100.0) - 0.5).abs() < 1e-9);
        assert_eq!(a.ticks().len(), 3);
    }

    #[test]
    fn chart_has_one_polyline_and_legend_per_series() {
        let chart = LineChart {
            title: "t <&>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: Scale::Linear,
            y_scale: Scale::Log,
            x_ticks: None,
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 10.0), (2.0, 100.0)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(1.0, 20.0), (f64::NAN, 5.0)],
                },
            ],
        };
        let svg = chart.render();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3, "NaN points are skipped");
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
