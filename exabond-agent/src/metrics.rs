//! The optional Prometheus endpoint (`exabond agent --metrics-addr 127.0.0.1:9464`): `GET /metrics` in the
//! `OpenMetrics` text format (encoded by `prometheus-client`; Prometheus asks for it and parses it), served by a
//! minimal HTTP/1.1 responder (one request per connection, `Connection: close`). Other paths get 404, other
//! methods 405. Every value is read from the agent's state at scrape time.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `exabond_failovers_total` | counter | `bond` | changes of the active slave since the bond was managed (the page's failover count) |
//! | `exabond_vetoes_total` | counter | `bond` | operations on the bond refused by the BPF LSM |
//! | `exabond_slave_link_up` | gauge | `bond`, `slave` | 1 if the member's link is up, 0 otherwise |
//! | `exabond_active_slave_info` | info | `bond`, `slave` | 1 for the active member (no series when there is none) |
//! | `exabond_page_update_latency_seconds` | histogram | — | kernel event (eBPF) → page published, per failover |
//! | `exabond_agent_heartbeat_age_seconds` | gauge | `bond` | age of the page's heartbeat (a few poll periods at most while the agent is healthy) |
//! | `exabond_managed_bonds` | gauge | — | number of managed bonds |
//! | `exabond_enforcement_lsm` | gauge | — | 1 if the BPF LSM vetoes are attached, 0 in detect-and-revert mode |
//! | `exabond_bypasses_total` | counter | `bond`, `kind` | a forbidden member (`member`) or mode (`mode`) found on a managed bond and repaired: it got past the vetoes (or there are none) |
//! | `exabond_netlink_resyncs_total` | counter | — | full resynchronisations after rtnetlink notifications were lost (receive buffer overrun) |
//! | `exabond_self_check_repairs_total` | counter | `what` | pins re-pinned (`pin`) and map entries rewritten (`map`) by the self-check |
//! | `exabond_enforcement_degraded` | gauge | — | 1 while the self-check finds something it cannot repair (see `exabond status`), else 0 |
//! | `exabond_failover_probe_attached` | gauge | — | 1 while the failover kprobe is attached to the loaded bonding module; 0 while the module is absent, after a reload it could not be attached to (see `exabond status`), or without eBPF |
//! | `exabond_failover_probe_reattaches_total` | counter | — | times the kprobes were attached again after the bonding module was loaded again |
//! | `exabond_mac_pitfalls` | gauge | `bond` | devices outside the bond that own its MAC (see `mac_pitfall`); 0 is healthy |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use exabond_common::page::LinkState;

use crate::agent_events::LATENCY_BUCKETS_US;
use crate::enforcement::Mode;
use crate::mac_pitfall::Tracker;
use crate::shared::Shared;

/// The content type of the `OpenMetrics` text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest request head accepted.
const MAX_HEAD: usize = 8192;
/// A client gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One managed bond at scrape time.
#[derive(Debug, Clone, Default)]
pub struct BondSample {
    /// Name.
    pub bond: String,
    /// Failover count of the page.
    pub failovers: u64,
    /// Vetoes counted.
    pub vetoes: u64,
    /// Members: (name, link up, active).
    pub slaves: Vec<(String, bool, bool)>,
    /// Heartbeat age, seconds.
    pub heartbeat_age_s: f64,
    /// MAC pitfalls (donor count).
    pub mac_pitfalls: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Per bond.
    pub bonds: Vec<BondSample>,
    /// Cumulative latency buckets (per [`LATENCY_BUCKETS_US`]), count, sum (ns).
    pub latency: ([u64; LATENCY_BUCKETS_US.len()], u64, u64),
    /// BPF LSM vetoes attached.
    pub lsm: bool,
    /// Bypasses by (bond, kind).
    pub bypasses: Vec<((String, &'static str), u64)>,
    /// rtnetlink resynchronisations.
    pub resyncs: u64,
    /// Self-check repairs by what.
    pub repairs: Vec<(&'static str, u64)>,
    /// Enforcement degraded.
    pub degraded: bool,
    /// The failover kprobe attached.
    pub probe_attached: bool,
    /// Re-attaches of the kprobes.
    pub probe_reattaches: u64,
}

impl Sample {
    /// Read the agent's state.
    #[must_use]
    pub fn read(shared: &Shared, pitfalls: &Tracker) -> Self {
        let lsm = shared.enforcement().mode == Mode::LsmVeto;
        let pitfalls = pitfalls.current();
        let pages = shared.publisher().pages();
        let now = exabond_common::clock::monotonic_ns();
        let bonds = pages
            .iter()
            .map(|d| {
                let bond = d.bond_name().to_owned();
                BondSample {
                    failovers: d.failover_count,
                    vetoes: shared.vetoes.get(d.bond_ifindex),
                    slaves: d
                        .slaves()
                        .iter()
                        .map(|s| (s.name().to_owned(), s.link_state() == LinkState::Up, s.is_active()))
                        .collect(),
                    heartbeat_age_s: Duration::from_nanos(now.saturating_sub(d.heartbeat_mono_ns)).as_secs_f64(),
                    mac_pitfalls: pitfalls.iter().filter(|x| x.bond_ifindex == d.bond_ifindex).count() as u64,
                    bond,
                }
            })
            .collect();
        let latency = shared.latency.snapshot();
        let c = &shared.counters;
        Self {
            bonds,
            latency,
            lsm,
            bypasses: c.bypasses(),
            resyncs: c.resyncs(),
            repairs: c.repairs(),
            degraded: !c.degraded().is_empty(),
            probe_attached: c.probe() == crate::failover_probes::ProbeState::Attached,
            probe_reattaches: c.probe_reattaches(),
        }
    }

    /// The `OpenMetrics` text.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!("metrics encoding failed: {e}");
        }
        out
    }
}

fn bond_label(b: &BondSample) -> Vec<(&'static str, String)> {
    vec![("bond", b.bond.clone())]
}

impl Sample {
    /// The counters of what enforcement repaired, and the degraded gauge.
    fn encode_repairs(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "exabond_bypasses",
            "Forbidden members and modes found on a managed bond and repaired (they got past the vetoes).",
            None,
            MetricType::Counter,
        )?;
        for ((bond, kind), n) in &self.bypasses {
            let labels = vec![("bond", bond.clone()), ("kind", (*kind).to_owned())];
            ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
        }
        let m = enc.encode_descriptor(
            "exabond_netlink_resyncs",
            "Full resynchronisations after rtnetlink notifications were lost (receive buffer overrun).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.resyncs).encode(m)?;
        let mut m = enc.encode_descriptor(
            "exabond_self_check_repairs",
            "Pins re-pinned and map entries rewritten by the enforcement self-check.",
            None,
            MetricType::Counter,
        )?;
        for (what, n) in &self.repairs {
            ConstCounter::new(*n).encode(m.encode_family(&vec![("what", (*what).to_owned())])?)?;
        }
        let m = enc.encode_descriptor(
            "exabond_enforcement_degraded",
            "1 while the self-check finds something it cannot repair (see exabond status), else 0.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.degraded)).encode(m)?;
        let m = enc.encode_descriptor(
            "exabond_failover_probe_attached",
            "1 while the failover kprobe is attached to the loaded bonding module, else 0.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.probe_attached)).encode(m)?;
        let m = enc.encode_descriptor(
            "exabond_failover_probe_reattaches",
            "Times the kprobes were attached again after the bonding module was loaded again.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.probe_reattaches).encode(m)?;
        Ok(())
    }
}

impl prometheus_client::collector::Collector for Sample {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "exabond_failovers",
            "Changes of the active slave since the bond was managed (the page's failover count).",
            None,
            MetricType::Counter,
        )?;
        for b in &self.bonds {
            ConstCounter::new(b.failovers).encode(m.encode_family(&bond_label(b))?)?;
        }
        let mut m = enc.encode_descriptor(
            "exabond_vetoes",
            "Operations on the bond refused by the BPF LSM.",
            None,
            MetricType::Counter,
        )?;
        for b in &self.bonds {
            ConstCounter::new(b.vetoes).encode(m.encode_family(&bond_label(b))?)?;
        }
        let mut m = enc.encode_descriptor(
            "exabond_slave_link_up",
            "1 if the member's link is up, 0 otherwise.",
            None,
            MetricType::Gauge,
        )?;
        for b in &self.bonds {
            for (s, up, _) in &b.slaves {
                let labels = vec![("bond", b.bond.clone()), ("slave", s.clone())];
                ConstGauge::new(i64::from(*up)).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "exabond_active_slave",
            "The active member of the bond (1; no series when the bond has none).",
            None,
            MetricType::Info,
        )?;
        for b in &self.bonds {
            for (s, _, active) in &b.slaves {
                if *active {
                    m.encode_info(&vec![("bond", b.bond.clone()), ("slave", s.clone())])?;
                }
            }
        }
        let (cumulative, count, sum_ns) = self.latency;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_US.len() + 1);
        let mut below = 0;
        for (le_us, c) in LATENCY_BUCKETS_US.iter().zip(cumulative) {
            buckets.push((Duration::from_micros(*le_us).as_secs_f64(), c.saturating_sub(below)));
            below = c;
        }
        buckets.push((f64::INFINITY, count.saturating_sub(below)));
        let mut m = enc.encode_descriptor(
            "exabond_page_update_latency",
            "Kernel failover event (eBPF) to page published.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<Vec<(String, String)>>(Duration::from_nanos(sum_ns).as_secs_f64(), count, &buckets, None)?;
        let mut m = enc.encode_descriptor(
            "exabond_agent_heartbeat_age_seconds",
            "Age of the page's agent heartbeat.",
            None,
            MetricType::Gauge,
        )?;
        for b in &self.bonds {
            ConstGauge::new(b.heartbeat_age_s).encode(m.encode_family(&bond_label(b))?)?;
        }
        let m = enc.encode_descriptor("exabond_managed_bonds", "Number of managed bonds.", None, MetricType::Gauge)?;
        ConstGauge::new(i64::try_from(self.bonds.len()).unwrap_or(i64::MAX)).encode(m)?;
        let m = enc.encode_descriptor(
            "exabond_enforcement_lsm",
            "1 if the BPF LSM vetoes are attached, 0 in detect-and-revert mode.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.lsm)).encode(m)?;
        self.encode_repairs(&mut enc)?;
        let mut m = enc.encode_descriptor(
            "exabond_mac_pitfalls",
            "Devices outside the bond that own the bond's MAC address (0 is healthy).",
            None,
            MetricType::Gauge,
        )?;
        for b in &self.bonds {
            ConstGauge::new(i64::try_from(b.mac_pitfalls).unwrap_or(i64::MAX))
                .encode(m.encode_family(&bond_label(b))?)?;
        }
        Ok(())
    }
}

/// Bind the endpoint.
///
/// # Errors
/// The bind error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The response to a request head (`GET /metrics HTTP/1.1\r\n...`); `metrics` renders the body.
#[must_use]
pub fn respond(head: &str, metrics: impl FnOnce() -> String) -> Vec<u8> {
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let reply = |status: &str, ctype: &str, extra: &str, body: String, with_body: bool| {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        if with_body {
            r.extend_from_slice(body.as_bytes());
        }
        r
    };
    let text = "text/plain; charset=utf-8";
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return reply("400 Bad Request", text, "", "bad request\n".into(), true);
    };
    if !version.starts_with("HTTP/1.") {
        return reply("400 Bad Request", text, "", "HTTP/1.x only\n".into(), true);
    }
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return reply("405 Method Not Allowed", text, "Allow: GET, HEAD\r\n", "GET /metrics\n".into(), true);
    }
    let path = target.split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return reply("404 Not Found", text, "", "not found: the metrics are at /metrics\n".into(), !head_only);
    }
    reply("200 OK", CONTENT_TYPE, "", metrics(), !head_only)
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_HEAD {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>, pitfalls: Arc<Tracker>) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!("metrics connection: {e}");
            return;
        }
        Err(_) => return,
    };
    let response = respond(&head, || Sample::read(&shared, &pitfalls).encode());
    if let Err(e) = stream.write_all(&response).await {
        tracing::debug!("metrics connection: {e}");
    }
    let _ = stream.shutdown().await;
}

/// Serve until cancelled.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, pitfalls: Arc<Tracker>, cancel: CancellationToken) {
    loop {
        let conn = tokio::select! {
            () = cancel.cancelled() => return,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, shared.clone(), pitfalls.clone()));
            }
            Err(e) => {
                tracing::warn!("metrics endpoint accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            bonds: vec![BondSample {
                bond: "bond0".into(),
                failovers: 3,
                vetoes: 2,
                slaves: vec![("eth0".into(), true, false), ("eth1".into(), false, true)],
                heartbeat_age_s: 0.25,
                mac_pitfalls: 1,
            }],
            latency: Sample::default().latency,
            lsm: true,
            bypasses: vec![(("bond0".into(), "member"), 4)],
            resyncs: 2,
            repairs: vec![("pin", 1)],
            degraded: true,
            probe_attached: false,
            probe_reattaches: 5,
        }
    }

    #[test]
    fn every_metric_is_there() {
        let h = crate::agent_events::LatencyHistogram::default();
        h.record(5_000);
        h.record(700_000);
        h.record(1_000_000_000);
        let s = Sample { latency: h.snapshot(), ..sample() };
        let text = s.encode();
        for line in [
            "# TYPE exabond_failovers counter",
            "exabond_failovers_total{bond=\"bond0\"} 3",
            "exabond_vetoes_total{bond=\"bond0\"} 2",
            "exabond_slave_link_up{bond=\"bond0\",slave=\"eth0\"} 1",
            "exabond_slave_link_up{bond=\"bond0\",slave=\"eth1\"} 0",
            "exabond_active_slave_info{bond=\"bond0\",slave=\"eth1\"} 1",
            "# TYPE exabond_page_update_latency_seconds histogram",
            "exabond_page_update_latency_seconds_count 3",
            "exabond_page_update_latency_seconds_bucket{le=\"0.00001\"} 1",
            "exabond_page_update_latency_seconds_bucket{le=\"0.0005\"} 1",
            "exabond_page_update_latency_seconds_bucket{le=\"0.001\"} 2",
            "exabond_page_update_latency_seconds_bucket{le=\"0.1\"} 2",
            "exabond_page_update_latency_seconds_bucket{le=\"+Inf\"} 3",
            "exabond_agent_heartbeat_age_seconds{bond=\"bond0\"} 0.25",
            "exabond_managed_bonds 1",
            "exabond_enforcement_lsm 1",
            "exabond_mac_pitfalls{bond=\"bond0\"} 1",
            "exabond_bypasses_total{bond=\"bond0\",kind=\"member\"} 4",
            "exabond_netlink_resyncs_total 2",
            "exabond_self_check_repairs_total{what=\"pin\"} 1",
            "exabond_enforcement_degraded 1",
            "exabond_failover_probe_attached 0",
            "exabond_failover_probe_reattaches_total 5",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("exabond_active_slave_info{bond=\"bond0\",slave=\"eth0\"}"),
            "only the active one:\n{text}"
        );
        let sum = text.lines().find(|l| l.starts_with("exabond_page_update_latency_seconds_sum ")).unwrap();
        let v: f64 = sum.split(' ').nth(1).unwrap().parse().unwrap();
        assert!((v - 1.000_705).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn empty_agent() {
        let text = Sample::default().encode();
        assert!(text.contains("exabond_managed_bonds 0\n"), "{text}");
        assert!(text.contains("exabond_enforcement_lsm 0\n"), "{text}");
        assert!(text.contains("exabond_enforcement_degraded 0\n"), "{text}");
        assert!(text.contains("exabond_netlink_resyncs_total 0\n"), "{text}");
        assert!(text.contains("exabond_page_update_latency_seconds_bucket{le=\"+Inf\"} 0\n"), "{text}");
    }

    fn status_line(r: &[u8]) -> String {
        String::from_utf8_lossy(r).lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn routes() {
        let body = || "m 1\n".to_owned();
        let r = respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body);
        let t = String::from_utf8(r).unwrap();
        assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
        assert!(t.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{t}");
        assert!(t.contains("Content-Length: 4\r\n") && t.ends_with("\r\n\r\nm 1\n"), "{t}");
        assert_eq!(status_line(&respond("GET /metrics?x=1 HTTP/1.0\r\n\r\n", body)), "HTTP/1.1 200 OK");
        let head = String::from_utf8(respond("HEAD /metrics HTTP/1.1\r\n\r\n", body)).unwrap();
        assert!(head.contains("Content-Length: 4") && head.ends_with("\r\n\r\n"), "{head}");
        assert_eq!(status_line(&respond("GET / HTTP/1.1\r\n\r\n", body)), "HTTP/1.1 404 Not Found");
        assert_eq!(status_line(&respond("GET /metricsx HTTP/1.1\r\n\r\n", body)), "HTTP/1.1 404 Not Found");
        assert_eq!(status_line(&respond("POST /metrics HTTP/1.1\r\n\r\n", body)), "HTTP/1.1 405 Method Not Allowed");
        assert_eq!(status_line(&respond("garbage\r\n\r\n", body)), "HTTP/1.1 400 Bad Request");
        assert_eq!(status_line(&respond("", body)), "HTTP/1.1 400 Bad Request");
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let head = read_head(&mut s).await.unwrap();
            s.write_all(&respond(&head, || sample().encode())).await.unwrap();
            s.shutdown().await.unwrap();
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        server.await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("exabond_failovers_total{bond=\"bond0\"} 3"), "{out}");
    }
}
