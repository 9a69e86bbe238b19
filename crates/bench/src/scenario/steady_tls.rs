//! Scenario 6, steady-state overhead over TLS: the steady scenario's load (interleaved
//! rounds, the same workers and items) through our client to three instances serving HTTPS,
//! against hyper over rustls by hand (to one instance, and round-robin by hand) and against
//! nginx terminating TLS in front of three plain instances.
//!
//! Every client trusts only the bed's CA and offers h2 and http/1.1 by ALPN, as our client's
//! transport does; the instances and nginx choose h2. There is no reqwest contender: no
//! crate in this workspace turns on a reqwest TLS feature (one would make every
//! `reqwest::Client::new()` in the other crates panic for want of a crypto provider), so
//! hyper-util + hyper-rustls by hand is the plain-client baseline.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use discovery_client::{ServiceClient, StaticDiscovery};

use super::Entry;
use super::rounds::{self, CPU_NOTE, Tally, measure};
use super::tls_bed::TlsBed;
use crate::config::{ContenderName, Plan};
use crate::contender::{Alpn, Contender, answered_over, tls_hyper};
use crate::peers::{Peer, Resilience};
use crate::report::Section;

/// What this scenario compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKind {
    /// hyper over rustls by hand, to instance 1.
    Hyper,
    /// hyper over rustls by hand, round-robin over the three instances.
    HyperRoundRobin,
    /// Our `ServiceClient` over `https://`.
    Ours,
    /// hyper over rustls by hand to nginx, which terminates TLS in front of plain instances.
    Nginx,
}

impl TlsKind {
    /// The name used in tables.
    pub fn name(self) -> &'static str {
        match self {
            TlsKind::Hyper => "hyper+rustls, one instance",
            TlsKind::HyperRoundRobin => "hyper+rustls, round-robin by hand",
            TlsKind::Ours => "discovery-client ServiceClient, https",
            TlsKind::Nginx => "via nginx terminating TLS",
        }
    }

    /// The `--contender` name that selects it.
    fn flag(self) -> ContenderName {
        match self {
            TlsKind::Hyper => ContenderName::Hyper,
            TlsKind::HyperRoundRobin => ContenderName::HyperRoundRobin,
            TlsKind::Ours => ContenderName::Ours,
            TlsKind::Nginx => ContenderName::Nginx,
        }
    }
}

/// The contenders this bed can run and the plan asks for, in table order.
fn kinds(bed: &TlsBed, plan: &Plan) -> Vec<TlsKind> {
    let mut kinds = vec![TlsKind::Hyper, TlsKind::HyperRoundRobin, TlsKind::Ours];
    if bed.nginx.is_some() {
        kinds.push(TlsKind::Nginx);
    }
    kinds.retain(|k| plan.contenders.is_empty() || plan.contenders.contains(&k.flag()));
    kinds
}

/// A fresh contender of `kind`, with the steady scenario's settings.
async fn make(bed: &TlsBed, kind: TlsKind, plan: &Plan) -> Result<Entry, String> {
    let urls = bed.urls();
    let hyper = |urls: Vec<String>, timeout: Duration| -> Result<Contender, String> {
        Ok(Contender::HyperTls {
            http: Box::new(tls_hyper(&bed.ca_pem, Alpn::Both)?),
            urls,
            next: AtomicUsize::new(0),
            timeout,
        })
    };
    let (contender, peer) = match kind {
        TlsKind::Hyper => (hyper(vec![urls[0].clone()], plan.timeout)?, None),
        TlsKind::HyperRoundRobin => (hyper(urls, plan.timeout)?, None),
        TlsKind::Ours => {
            let client = ServiceClient::builder("ratings")
                .discovery(StaticDiscovery::new(urls))
                .tls_roots_only(&bed.ca_pem)
                .timeout(plan.timeout)
                .failure_limit(1)
                .retest_delay(Duration::from_secs(30))
                .max_retries(plan.retries)
                .cache_ttl(Duration::ZERO)
                .build()
                .map_err(|e| format!("ServiceClient: {e}"))?;
            (Contender::Ours(client), None)
        }
        TlsKind::Nginx => {
            let program = bed.nginx.as_ref().ok_or("nginx is not available")?;
            let plain: Vec<String> = bed.plain.iter().map(|s| s.url.clone()).collect();
            let settings = Resilience {
                timeout: plan.timeout,
                retest: Duration::from_secs(30),
                retries: plan.retries,
            };
            let peer = Peer::start_tls(program, &plain, settings, &bed.certificate).await?;
            // nginx's own timeouts and retries decide; this only bounds the worst case.
            let contender = hyper(vec![peer.url.clone()], plan.timeout * (plan.retries + 2))?;
            (contender, Some(peer))
        }
    };
    Ok(Entry {
        name: kind.name().to_string(),
        contender: Arc::new(contender),
        peer,
    })
}

/// Runs scenario 6 and reports it.
pub async fn run(bed: &TlsBed, plan: &Plan) -> Result<Section, String> {
    let mut entries = Vec::new();
    for kind in kinds(bed, plan) {
        entries.push((kind, make(bed, kind, plan).await?));
    }
    let protocols = probe(bed, &entries).await?;
    let tallies = measure(entries, &bed.all_instances(), plan, "steady-tls").await;
    Ok(report(&tallies, plan, bed, &protocols))
}

/// The protocol each kind of server chose, as a probe request saw it.
struct Protocols {
    instances: String,
    nginx: String,
}

/// Asks instance 1 (and nginx, if it runs) once which protocol it chooses.
async fn probe(bed: &TlsBed, entries: &[(TlsKind, Entry)]) -> Result<Protocols, String> {
    let http = tls_hyper(&bed.ca_pem, Alpn::Both)?;
    let instances = answered_over(&http, &bed.urls()[0]).await;
    let nginx = match entries.iter().find_map(|(_, e)| e.peer.as_ref()) {
        Some(peer) => answered_over(&http, &peer.url).await,
        None => "not run".to_string(),
    };
    Ok(Protocols { instances, nginx })
}

fn report(tallies: &[Tally<TlsKind>], plan: &Plan, bed: &TlsBed, protocols: &Protocols) -> Section {
    let mut section = Section::new("6. Steady-state overhead over TLS");
    section.note(format!(
        "Closed loop, {} workers, `GET /ratings/{{id}}` over 7 items, cache off, 3 ratings instances serving \
         HTTPS (certificate from a CA made at run time; every client offers h2 and http/1.1 by ALPN). \
         {} rounds × {} s per contender, interleaved; {} ms warm-up each. nginx terminates TLS (h2) in front \
         of 3 plain instances (HTTP/1.1 keep-alive upstream). No reqwest rows: no crate here turns on a reqwest \
         TLS feature, so the plain-client baseline is hyper-util + hyper-rustls by hand (ring provider), the stack \
         under our client's transport.",
        plan.concurrency,
        plan.steady_rounds,
        plan.steady_window.as_secs_f64(),
        plan.warmup.as_millis()
    ));
    section.note(format!(
        "Protocol chosen, from one probe request each by hyper+rustls offering both: instances {}, nginx {}.",
        protocols.instances, protocols.nginx
    ));
    for line in &bed.skipped {
        section.note(format!("> {line}"));
    }
    let find = |kind: TlsKind| tallies.iter().find(|t| t.kind == kind);
    let one = find(TlsKind::Hyper);
    let rr = find(TlsKind::HyperRoundRobin);
    let ours = find(TlsKind::Ours);
    let base = "hyper+rustls one instance";
    section.table(&rounds::throughput_table(tallies, one, base, ours));
    section.note(CPU_NOTE);
    section.table(&rounds::cpu_table(tallies, one, base, ours));
    let Some(ours) = ours else {
        return section;
    };
    if let Some(one) = one {
        let r = ours.throughput() / one.throughput();
        section.target(
            r >= 0.95,
            format!("throughput ≥ 0.95× hyper+rustls by hand, one instance: {r:.2}×"),
        );
    }
    if let Some(nginx) = find(TlsKind::Nginx) {
        let r = ours.throughput() / nginx.throughput();
        section.target(
            r >= 1.5,
            format!("throughput ≥ 1.5× via nginx terminating TLS: {r:.2}×"),
        );
    }
    for (label, other) in [("one instance", one), ("round-robin", rr)] {
        if let Some(other) = other {
            let r = ours.caller_per_request() / other.caller_per_request();
            section.target(
                r <= 1.10,
                format!(
                    "caller CPU per request ≤ hyper+rustls by hand ({label}) + 10 %: {:.1} vs {:.1} µs, {r:.2}×",
                    ours.caller_per_request(),
                    other.caller_per_request()
                ),
            );
        }
    }
    section.end_list();
    section
}
