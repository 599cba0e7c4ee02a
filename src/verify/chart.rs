//! Line charts as SVG for reports (verification trajectories and errors,
//! the batch-size curve), drawn with plotters: round tick values, a log
//! scale where a quantity spans decades (errors, throughput, batch size),
//! and the legend beside the plot, never over the data. Files any browser
//! or document viewer opens; text is SVG text, so no font files are needed.

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a chart.
pub struct Series {
    pub name: String,
    /// Index into the chart palette.
    pub color: usize,
    pub stroke: Stroke,
    pub points: Vec<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stroke {
    Solid,
    Dashed,
    /// Unconnected points (a scatter plot).
    Points,
}

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Logarithmic; values ≤ 0 cannot be shown and are left out.
    Log,
}

/// What a chart shows.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub series: &'a [Series],
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x17, 0xbe, 0xcf),
];

const WIDTH: u32 = 760;
const HEIGHT: u32 = 380;
/// Width of the legend column right of the plot.
const LEGEND: u32 = 190;

/// The chart as an SVG document.
pub fn svg(c: &Chart) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        // drawing into a string cannot fail but for a plotters bug: an empty chart then
        let _ = draw(&root, c);
        let _ = root.present();
    }
    out
}

/// The points of `s` that the axes can show.
fn shown(c: &Chart, s: &Series) -> Vec<(f64, f64)> {
    let ok = |v: f64, scale: Scale| v.is_finite() && (scale == Scale::Linear || v > 0.0);
    s.points.iter().copied().filter(|&(x, y)| ok(x, c.x_scale) && ok(y, c.y_scale)).collect()
}

/// The axis range over `values`: padded by 5% (linear) or to whole decades (log).
fn range(values: impl Iterator<Item = f64>, scale: Scale) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    match scale {
        _ if !lo.is_finite() => (if scale == Scale::Log { 1.0 } else { 0.0 }, 10.0),
        Scale::Linear => {
            let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
            (lo - pad, hi + pad)
        }
        Scale::Log => {
            let (a, b) = (lo.log10().floor(), hi.log10().ceil());
            (10f64.powf(a), 10f64.powf(if b > a { b } else { a + 1.0 }))
        }
    }
}

fn draw(root: &DrawingArea<SVGBackend<'_>, Shift>, c: &Chart) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND);
    let points: Vec<Vec<(f64, f64)>> = c.series.iter().map(|s| shown(c, s)).collect();
    let (x0, x1) = range(points.iter().flatten().map(|p| p.0), c.x_scale);
    let (y0, y1) = range(points.iter().flatten().map(|p| p.1), c.y_scale);
    match (c.x_scale, c.y_scale) {
        (Scale::Linear, Scale::Linear) => plot_on(&plot, c, &points, x0..x1, y0..y1)?,
        (Scale::Linear, Scale::Log) => plot_on(&plot, c, &points, x0..x1, (y0..y1).log_scale())?,
        (Scale::Log, Scale::Linear) => plot_on(&plot, c, &points, (x0..x1).log_scale(), y0..y1)?,
        (Scale::Log, Scale::Log) => plot_on(&plot, c, &points, (x0..x1).log_scale(), (y0..y1).log_scale())?,
    }
    // the legend: a sample of each line and its name, beside the plot
    for (i, s) in c.series.iter().enumerate() {
        let y = 40 + 20 * i as i32;
        let style = PALETTE[s.color % PALETTE.len()].stroke_width(2);
        match s.stroke {
            Stroke::Dashed => {
                for k in 0..3 {
                    legend.draw(&PathElement::new(vec![(8 + 10 * k, y), (14 + 10 * k, y)], style))?;
                }
            }
            Stroke::Solid => legend.draw(&PathElement::new(vec![(8, y), (34, y)], style))?,
            Stroke::Points => legend.draw(&Circle::new((21, y), 3, PALETTE[s.color % PALETTE.len()].filled()))?,
        }
        legend.draw(&Text::new(s.name.clone(), (40, y - 7), ("sans-serif", 13).into_font()))?;
    }
    Ok(())
}

fn plot_on<X, Y>(area: &DrawingArea<SVGBackend<'_>, Shift>, c: &Chart, points: &[Vec<(f64, f64)>], x: X, y: Y) -> Result<(), Box<dyn std::error::Error>>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(c.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label)
        .y_desc(c.y_label)
        .x_labels(8)
        .y_labels(8)
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 12))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    for (s, pts) in c.series.iter().zip(points) {
        let color = PALETTE[s.color % PALETTE.len()];
        let style = color.stroke_width(2);
        match s.stroke {
            Stroke::Dashed => {
                chart.draw_series(DashedLineSeries::new(pts.iter().copied(), 6, 4, style))?;
            }
            Stroke::Solid => {
                chart.draw_series(LineSeries::new(pts.iter().copied(), style))?;
            }
            Stroke::Points => {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.mix(0.7).filled())))?;
            }
        }
    }
    Ok(())
}

/// One box of a box plot: a label and the values it summarises.
pub struct BoxGroup {
    pub label: String,
    pub values: Vec<f64>,
}

/// Box plots of each group along a log axis, one row per group with its
/// label on the left (box: quartiles and median; whiskers: the furthest
/// values within 1.5 interquartile ranges). Values a log axis cannot show
/// are left out.
pub fn boxes(title: &str, x_label: &str, groups: &[BoxGroup]) -> String {
    let mut out = String::new();
    let height = HEIGHT.max(90 + 26 * groups.len() as u32);
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        let _ = draw_boxes(&root, title, x_label, groups);
        let _ = root.present();
    }
    out
}

fn draw_boxes(root: &DrawingArea<SVGBackend<'_>, Shift>, title: &str, x_label: &str, groups: &[BoxGroup]) -> Result<(), Box<dyn std::error::Error>> {
    use crate::metrics::quantile;
    root.fill(&WHITE)?;
    let kept: Vec<Vec<f64>> = groups.iter().map(|g| g.values.iter().copied().filter(|v| v.is_finite() && *v > 0.0).collect()).collect();
    let (x0, x1) = range(kept.iter().flatten().copied(), Scale::Log);
    let n = groups.len().max(1);
    // first group at the top
    let row = |i: usize| (n - 1 - i) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(200)
        .build_cartesian_2d((x0..x1).log_scale(), -0.6..(n as f64 - 0.4))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .x_labels(8)
        .y_labels(0)
        .disable_y_mesh()
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 12))
        .x_label_formatter(&|v| tick(*v))
        .draw()?;
    let color = PALETTE[0];
    let style = color.stroke_width(2);
    for (i, v) in kept.iter().enumerate() {
        let y = row(i);
        // the label, right-aligned left of the plot
        let (px, py) = chart.backend_coord(&(x0, y));
        let font = ("sans-serif", 12).into_font().color(&BLACK).pos(plotters::style::text_anchor::Pos::new(plotters::style::text_anchor::HPos::Right, plotters::style::text_anchor::VPos::Center));
        root.draw(&Text::new(format!("{} ({})", groups[i].label, groups[i].values.len()), (px - 8, py), font))?;
        let (Some(q1), Some(med), Some(q3)) = (quantile(v, 0.25), quantile(v, 0.5), quantile(v, 0.75)) else { continue };
        let iqr = q3 - q1;
        // whiskers: the furthest values within 1.5 interquartile ranges of the box
        let lo = v.iter().copied().filter(|&x| x >= q1 - 1.5 * iqr).fold(q1, f64::min);
        let hi = v.iter().copied().filter(|&x| x <= q3 + 1.5 * iqr).fold(q3, f64::max);
        let h = 0.25;
        chart.draw_series([Rectangle::new([(q1, y - h), (q3, y + h)], style)])?;
        chart.draw_series([PathElement::new(vec![(med, y - h), (med, y + h)], style)])?;
        for (a, b) in [(lo, q1), (q3, hi)] {
            chart.draw_series([PathElement::new(vec![(a, y), (b, y)], color.stroke_width(1))])?;
        }
        for w in [lo, hi] {
            chart.draw_series([PathElement::new(vec![(w, y - h / 2.0), (w, y + h / 2.0)], color.stroke_width(1))])?;
        }
        // values beyond the whiskers, as points
        chart.draw_series(v.iter().filter(|&&x| x < lo || x > hi).map(|&x| Circle::new((x, y), 2, color.filled())))?;
    }
    Ok(())
}

/// A tick value as people write it: `0.25`, `20`, `1e-5`, `2.5e6`.
fn tick(v: f64) -> String {
    let trim = |s: String| if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if v == 0.0 || (1e-3..1e5).contains(&v.abs()) {
        trim(format!("{v:.6}"))
    } else {
        let s = format!("{v:.3e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        format!("{}e{exp}", trim(mantissa.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: Vec<(f64, f64)>) -> Vec<Series> {
        vec![Series { name: "u MAE".into(), color: 0, stroke: Stroke::Solid, points }]
    }

    /// Numbers in the SVG's text elements.
    fn tick_values(svg: &str) -> Vec<f64> {
        svg.split("<text").skip(1).filter_map(|t| t.split('>').nth(1)?.split('<').next()?.trim().parse().ok()).collect()
    }

    #[test]
    fn linear_axes_get_round_ticks() {
        let s = series((0..=250).map(|i| (i as f64 * 0.1, 0.978 - 1.17 * (i as f64 / 250.0))).collect());
        let svg = svg(&Chart { title: "u", x_label: "t", y_label: "u", x_scale: Scale::Linear, y_scale: Scale::Linear, series: &s });
        let ticks = tick_values(&svg);
        assert!(ticks.len() >= 8, "{ticks:?}");
        // every tick a whole multiple of a round step (1, 2 or 5 × 10^k)
        for t in &ticks {
            let round = [1.0, 2.0, 5.0, 0.1, 0.2, 0.5, 0.05].iter().any(|step| ((t / step).round() * step - t).abs() < 1e-9);
            assert!(round, "tick {t} is not round: {ticks:?}");
        }
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn log_axes_leave_out_what_they_cannot_show_and_the_legend_stays_outside() {
        let mut pts: Vec<(f64, f64)> = (1..=100).map(|i| (i as f64, 1e-4 * i as f64)).collect();
        pts.push((0.0, 0.0)); // an exact zero error, not showable on a log axis
        pts.push((50.5, f64::INFINITY)); // a diverged point
        let s = series(pts);
        let svg = svg(&Chart { title: "e", x_label: "t", y_label: "MAE", x_scale: Scale::Linear, y_scale: Scale::Log, series: &s });
        assert!(svg.contains("<polyline"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        // the legend's text sits right of the plot area
        let legend_x: f64 = svg.split("<text").find(|t| t.contains("u MAE")).and_then(|t| t.split("x=\"").nth(1)?.split('"').next()?.parse().ok()).unwrap();
        assert!(legend_x >= (WIDTH - LEGEND) as f64, "legend at x = {legend_x}");
        // no negative tick on an error axis, decades written as such
        assert!(tick_values(&svg).iter().all(|&v| v >= 0.0));
        let ticks = tick_values(&svg);
        assert!(ticks.contains(&0.001) && ticks.contains(&0.01) && !svg.contains("99999"), "{ticks:?}");
    }

    #[test]
    fn ticks_read_as_written() {
        assert_eq!(tick(0.30000000000000004), "0.3");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(9.999999999999999e-6), "1e-5");
        assert_eq!(tick(2.5e6), "2.5e6");
        assert_eq!(tick(-0.1), "-0.1");
    }

    #[test]
    fn box_plots_draw_a_box_per_group() {
        let groups = vec![
            BoxGroup { label: "rectangle 96".into(), values: vec![1e-3, 2e-3, 3e-3, 5e-3, 4e-2] },
            BoxGroup { label: "funnel 96".into(), values: vec![2e-4, 3e-4, f64::NAN, 1e-3] },
        ];
        let svg = boxes("MAE by shape", "validation MAE", &groups);
        assert!(svg.contains("rectangle 96 (5)") && svg.contains("funnel 96 (4)"), "{svg}");
        assert!(!svg.contains("NaN"));
        // a box is a rectangle outline per group
        assert!(svg.matches("<rect").count() >= 3, "{svg}");
    }
}
