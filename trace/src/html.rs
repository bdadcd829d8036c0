//! The timeline page of a trace: one self-contained HTML file (the page of `view.html`, with
//! the run's events as JSON inside it; no network needed to open it). The page draws a lane per
//! store on a canvas, time running to the right: each replica's role and term as bands, message
//! arrows, crashes and partitions shaded, client operations as spans, the failure marked; it
//! zooms, pans, filters and shows an event's details on a click (docs/TRACES.md).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::check::{check, describe, secs};
use crate::record::Kind;
use crate::Trace;

/// The page template; `/*TRACE-DATA*/` is replaced by the run's JSON.
const TEMPLATE: &str = include_str!("view.html");

/// Microseconds of virtual time (the page's unit).
fn us(at_ns: u64) -> u64 {
    at_ns / 1000
}

/// The run's events as the page reads them (compact arrays; see `view.html` for the fields).
pub fn data(trace: &Trace) -> Value {
    let mut meta = json!({});
    let mut failure = Value::Null;
    // A message's id -> its row in `msgs`, until it is delivered or dropped.
    let mut in_flight: BTreeMap<u64, usize> = BTreeMap::new();
    let mut msgs: Vec<Value> = Vec::new();
    let mut roles = Vec::new();
    let mut commits = Vec::new();
    let mut applies = Vec::new();
    let mut crashes = Vec::new();
    let mut starts = Vec::new();
    let mut filters = Vec::new();
    let mut clients: BTreeMap<u64, Value> = BTreeMap::new();
    let mut commands: BTreeMap<u64, Value> = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut regions = Vec::new();
    let mut notes = Vec::new();
    let mut types = BTreeMap::new();
    for r in &trace.records {
        let at = us(r.at_ns);
        match &r.kind {
            Some(Kind::Header(h)) => {
                meta = json!({
                    "scenario": h.scenario, "seed": h.seed, "stores": h.stores,
                    "replay": h.replay,
                })
            }
            Some(Kind::Send(s)) => {
                let name = proto::eraftpb::MessageType::try_from(s.msg_type)
                    .map_or("Unknown", |t| t.as_str_name());
                types.insert(s.msg_type, name);
                // [send, arrive (-1 in flight, -2 dropped), from, to, type, region, term,
                //  index, entries, reject, commit, from peer, to peer, log term, id]
                msgs.push(json!([
                    at,
                    -1,
                    s.from_store,
                    s.to_store,
                    s.msg_type,
                    s.region,
                    s.term,
                    s.index,
                    s.entries,
                    s.reject as u8,
                    s.commit,
                    s.from_peer,
                    s.to_peer,
                    s.log_term,
                    s.id
                ]));
                in_flight.insert(s.id, msgs.len() - 1);
            }
            Some(Kind::Deliver(d)) => {
                if let Some(i) = in_flight.remove(&d.id) {
                    msgs[i][1] = json!(at);
                }
            }
            Some(Kind::Drop(d)) => {
                if let Some(i) = in_flight.remove(&d.id) {
                    msgs[i][1] = json!(-2);
                    msgs[i].as_array_mut().expect("array").push(json!(d.reason));
                }
            }
            Some(Kind::Role(x)) => roles.push(json!([
                at, x.store, x.region, x.peer, x.role, x.term, x.leader, x.vote, x.cause
            ])),
            Some(Kind::Commit(c)) => commits.push(json!([at, c.store, c.region, c.to])),
            Some(Kind::Apply(a)) => {
                applies.push(json!([at, a.store, a.region, a.to, a.snapshot as u8]))
            }
            Some(Kind::Crash(c)) => {
                // A crash's line names no message.
                let line = describe(r, &BTreeMap::new()).unwrap_or_default();
                crashes.push(json!([at, c.store, line]))
            }
            Some(Kind::Start(s)) => starts.push(json!([at, s.store])),
            Some(Kind::Filter(f)) => filters.push(json!([at, f.added as u8, f.text, f.sides])),
            Some(Kind::ClientStart(c)) => {
                clients.insert(
                    c.id,
                    json!([at, -1, c.op, String::from_utf8_lossy(&c.key), 0, ""]),
                );
            }
            Some(Kind::ClientEnd(c)) => {
                if let Some(v) = clients.get_mut(&c.id) {
                    v[1] = json!(at);
                    v[4] = json!(if c.ok { 1 } else { 2 });
                    v[5] = json!(c.detail);
                }
            }
            Some(Kind::Command(c)) => {
                commands.insert(c.id, json!([at, c.store, c.region, c.what, -1, "", c.peer]));
            }
            Some(Kind::Response(x)) => {
                if let Some(v) = commands.get_mut(&x.id) {
                    v[4] = json!(at);
                    v[5] = json!(x.error);
                }
            }
            Some(Kind::Snapshot(x)) => snapshots.push(json!([
                at,
                x.store,
                x.peer_store,
                x.region,
                x.index,
                x.what
            ])),
            Some(Kind::Region(x)) => regions.push(json!([
                at,
                x.store,
                x.region,
                x.what,
                String::from_utf8_lossy(&x.start_key),
                String::from_utf8_lossy(&x.end_key),
                x.version,
                x.conf_ver,
                x.peer
            ])),
            Some(Kind::Failure(f)) => {
                failure = json!({"at": at, "message": f.message, "location": f.location})
            }
            Some(Kind::Note(n)) => notes.push(json!([at, n.store, n.region, n.text])),
            Some(Kind::Footer(f)) => {
                meta["digest"] = json!(format!("{:016x}", f.digest));
            }
            None => {}
        }
    }
    let end = trace.records.last().map_or(0, |r| us(r.at_ns));
    meta["end"] = json!(end);
    meta["records"] = json!(trace.records.len());
    meta["complete"] = json!(trace.complete);
    let violations: Vec<Value> = check(trace)
        .into_iter()
        .map(|v| {
            json!({"at": us(v.at_ns), "invariant": v.invariant, "region": v.region,
                   "detail": v.detail, "when": secs(v.at_ns)})
        })
        .collect();
    json!({
        "meta": meta,
        "failure": failure,
        "violations": violations,
        "types": types,
        "msgs": msgs,
        "roles": roles,
        "commits": commits,
        "applies": applies,
        "crashes": crashes,
        "starts": starts,
        "filters": filters,
        "clients": clients.into_values().collect::<Vec<_>>(),
        "commands": commands.into_values().collect::<Vec<_>>(),
        "snapshots": snapshots,
        "regions": regions,
        "notes": notes,
    })
}

/// The timeline page of `trace`, as one HTML document.
pub fn page(trace: &Trace) -> String {
    // JSON inside a <script> element: no "</" may close it early.
    let json = data(trace).to_string().replace("</", "<\\/");
    TEMPLATE.replacen("/*TRACE-DATA*/null", &json, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Deliver, Failure, Header, Send};
    use crate::TraceWriter;
    use std::time::Duration;

    #[test]
    fn the_page_embeds_the_run_and_nothing_closes_its_script_early() {
        let mut w = TraceWriter::new();
        w.record(
            Duration::ZERO,
            Kind::Header(Header {
                scenario: "sim::x".into(),
                seed: 3,
                stores: vec![1, 2],
                replay: "</script><b>".into(),
            }),
        );
        w.record(
            Duration::from_millis(1),
            Kind::Send(Send {
                id: 1,
                region: 1,
                from_store: 1,
                to_store: 2,
                msg_type: 3,
                ..Default::default()
            }),
        );
        w.record(Duration::from_millis(2), Kind::Deliver(Deliver { id: 1 }));
        w.record(
            Duration::from_millis(3),
            Kind::Failure(Failure {
                message: "boom".into(),
                location: "a.rs:1:1".into(),
            }),
        );
        let t = crate::parse(&w.finish(Duration::from_millis(3), 1), "t").unwrap();
        let d = data(&t);
        assert_eq!(d["msgs"][0][1], json!(2000), "delivered at 2 ms");
        assert_eq!(d["failure"]["at"], json!(3000));
        let html = page(&t);
        assert!(!html.contains("/*TRACE-DATA*/"));
        assert_eq!(
            html.matches("</script>").count(),
            TEMPLATE.matches("</script>").count()
        );
        assert!(html.contains("sim::x"));
    }
}
