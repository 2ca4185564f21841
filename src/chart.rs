//! The bar chart `janus bench --suite --svg PATH` writes (plotters, SVG backend): above, Janus's
//! speed-up over QEMU TCG per workload (QEMU time / Janus time, log scale, 1 = as fast); below,
//! each emulator's time as a multiple of native (log scale). The last group is the geometric
//! mean.

use janus_vmm::bench_suite::SuiteReport;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const JANUS: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const QEMU: RGBColor = RGBColor(0xd0, 0x7a, 0x2a);

/// One group of bars: a label and up to two values (Janus, QEMU).
struct Group {
    label: String,
    values: [Option<f64>; 2],
}

/// A log axis that holds every value and 1 with some room.
fn log_range(groups: &[Group]) -> std::ops::Range<f64> {
    let vals = groups
        .iter()
        .flat_map(|g| g.values.iter().flatten().copied());
    let (lo, hi) = vals.fold((1.0f64, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    lo / 1.6..hi * 1.6
}

fn panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y_desc: &str,
    groups: &[Group],
    names: [&str; 2],
    legend: SeriesLabelPosition,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let n = groups.len().max(1) as f64;
    let range = log_range(groups);
    let y_lo = range.start;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..n, range.log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc(y_desc)
        .y_label_formatter(&|v| times(*v))
        .draw()
        .map_err(err)?;
    let bars = names.iter().filter(|n| !n.is_empty()).count().max(1);
    let width = 0.8 / bars as f64;
    for (k, (name, color)) in names.iter().zip([JANUS, QEMU]).enumerate() {
        if name.is_empty() {
            continue;
        }
        let rects = groups.iter().enumerate().filter_map(|(i, g)| {
            let v = g.values[k]?;
            let x0 = i as f64 + 0.1 + width * k as f64;
            Some(Rectangle::new([(x0, 1.0), (x0 + width, v)], color.filled()))
        });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n, 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(err)?;
    // The workload names, centred under their groups, and each bar's value at its end. The
    // chart maps to the whole image's pixels; the area draws relative to its own corner.
    let (bx, by) = area.get_base_pixel();
    let under = ("sans-serif", 12)
        .into_text_style(area)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let small = ("sans-serif", 10).into_text_style(area);
    for (i, g) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, y_lo));
        area.draw(&Text::new(
            g.label.clone(),
            (x - bx, y + 6 - by),
            under.clone(),
        ))
        .map_err(err)?;
        for (k, v) in g.values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let (x, y) = chart.backend_coord(&(i as f64 + 0.1 + width * (k as f64 + 0.5), v));
            let vpos = if v >= 1.0 { VPos::Bottom } else { VPos::Top };
            let dy = if v >= 1.0 { -2 } else { 2 };
            let style = small.pos(Pos::new(HPos::Center, vpos));
            area.draw(&Text::new(times(v), (x - bx, y + dy - by), style))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A ratio with two or three significant digits.
fn times(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}x")
    } else if v >= 1.0 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

/// Writes the chart of `r`'s ratios to `path`.
pub fn write_suite_svg(path: &Path, r: &SuiteReport) -> Result<(), String> {
    let with_mean = |mut g: Vec<Group>, mean: [Option<f64>; 2]| {
        g.push(Group {
            label: "geomean".into(),
            values: mean,
        });
        g
    };
    let speedup = with_mean(
        r.rows
            .iter()
            .map(|row| Group {
                label: row.name.clone(),
                values: [row.janus_speedup_vs_qemu, None],
            })
            .collect(),
        [r.geomean.janus_speedup_vs_qemu, None],
    );
    let native = with_mean(
        r.rows
            .iter()
            .filter(|row| row.native.is_some())
            .map(|row| Group {
                label: row.name.clone(),
                values: [row.janus_x_native, row.qemu_x_native],
            })
            .collect(),
        [r.geomean.janus_x_native, r.geomean.qemu_x_native],
    );
    let root = SVGBackend::new(path, (1100, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(380);
    panel(
        &top,
        "Janus (soft engine) against QEMU TCG: QEMU time / Janus time (above 1: Janus faster)",
        "speed-up",
        &speedup,
        ["Janus speed-up", ""],
        // The lower left stays empty while the boot (the first bar) is not slower than QEMU.
        SeriesLabelPosition::LowerLeft,
    )?;
    panel(
        &bottom,
        "Time as a multiple of native (lower is better)",
        "x native",
        &native,
        ["janus-soft", "qemu-tcg"],
        SeriesLabelPosition::UpperLeft,
    )?;
    root.present().map_err(|e| e.to_string())
}
