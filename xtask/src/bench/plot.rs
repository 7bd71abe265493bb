//! The SVG of the failover latency distributions (CDFs, log x): each agent configuration's page against
//! the rtnetlink listener of the same run, the 10 ms poller, and the computed 1 s poll of libvma/XLIO.

use std::path::Path;

use super::failover::VMA_POLL_US;
use super::stats::count;

/// One curve of the plot: label, sorted latencies (µs), colour, dashed.
pub(super) type Curve = (String, Vec<f64>, Rgb, bool);
/// An RGB colour.
pub(super) type Rgb = (u8, u8, u8);

/// The colour of a configuration's curves.
pub(super) fn colour(config: &str) -> Rgb {
    match config {
        "default" => (44, 160, 44),
        "busy_poll" => (31, 119, 180),
        "single_waiter" => (255, 127, 14),
        _ => (140, 86, 75),
    }
}

/// The SVG of the latency CDFs (log x): solid = the page, dashed = the rtnetlink listener of the same run.
pub(super) fn plot(path: &Path, title: &str, curves: &[Curve]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let e = |e: &dyn std::fmt::Debug| anyhow::anyhow!("plotting {}: {e:?}", path.display());
    let lo = curves.iter().filter_map(|c| c.1.first()).copied().fold(f64::INFINITY, f64::min).max(1.0);
    let lo = 10f64.powf(lo.log10().floor());
    let hi = VMA_POLL_US;
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 17))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("time after the kernel's bond_change_active_slave (log scale)")
        .y_desc("fraction of failovers seen")
        .x_label_formatter(&|v| if *v >= 1000.0 { format!("{} ms", v / 1000.0) } else { format!("{v} µs") })
        .draw()
        .map_err(|x| e(&x))?;
    let steps = |v: &[f64]| -> Vec<(f64, f64)> {
        let n = count(v.len());
        let mut pts = vec![(v[0].max(lo), 0.0)];
        for (i, x) in v.iter().enumerate() {
            pts.push((x.max(lo), count(i) / n));
            pts.push((x.max(lo), count(i + 1) / n));
        }
        pts
    };
    for (name, v, (r, g, b), dashed) in curves.iter().filter(|c| !c.1.is_empty()) {
        let style = RGBColor(*r, *g, *b).stroke_width(2);
        let legend = move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], style);
        if *dashed {
            chart
                .draw_series(DashedLineSeries::new(steps(v), 6, 4, style))
                .map_err(|x| e(&x))?
                .label(name)
                .legend(legend);
        } else {
            chart.draw_series(LineSeries::new(steps(v), style)).map_err(|x| e(&x))?.label(name).legend(legend);
        }
    }
    // libvma/XLIO: computed, uniform over the 1 s period.
    let vma: Vec<(f64, f64)> =
        (0..=200).map(|i| lo * (hi / lo).powf(f64::from(i) / 200.0)).map(|x| (x, x / hi)).collect();
    let grey = RGBColor(127, 127, 127).stroke_width(2);
    chart
        .draw_series(LineSeries::new(vma, grey))
        .map_err(|x| e(&x))?
        .label("libvma/XLIO 1 s poll (d), computed: uniform phase")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::Coordinate(540, 330))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
