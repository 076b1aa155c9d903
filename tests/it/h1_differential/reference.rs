//! The reference: today's path, hyper's HTTP/1 server built as limpet
//! builds it, then `proxy::check::request` and the whole body in the
//! service, over a pipe, on a paused clock.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use limpet::config::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Body, End, Outcome, Seen, fields_of};

/// What the reference's service saw of one request.
pub(super) struct Logged {
    seen: Seen,
    refused: Option<u16>,
}

/// The statuses the reference's service answers with, told apart from
/// those hyper answers by itself (a malformed request).
pub(super) const SERVED: u16 = 299;
pub(super) const CHECKED: u16 = 298;

pub(super) fn outcome(segments: &[Vec<u8>], limits: &Limits) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (log, output) = local.block_on(&rt, serve(segments.to_vec(), *limits));
    let log = std::mem::take(&mut *log.borrow_mut());
    let mut requests = Vec::new();
    for entry in log {
        if let Some(status) = entry.refused {
            return Outcome {
                requests,
                end: End::Refused(status, None),
            };
        }
        let failed = matches!(entry.seen.body, Body::Failed(_));
        requests.push(entry.seen);
        if failed {
            return Outcome {
                requests,
                end: End::Closed,
            };
        }
    }
    let end = match hyper_refusal(&output) {
        Some(status) => End::Refused(status, None),
        None => End::Closed,
    };
    Outcome { requests, end }
}

/// Waits until the connection has done all it can with what it has: the
/// clock is paused and moves on only when every task is idle.
pub(super) async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

pub(super) async fn serve(
    segments: Vec<Vec<u8>>,
    limits: Limits,
) -> (Rc<RefCell<Vec<Logged>>>, Vec<u8>) {
    let log: Rc<RefCell<Vec<Logged>>> = Rc::default();
    let svc = {
        let log = log.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let log = log.clone();
            async move { Ok::<_, Infallible>(record(req, &limits, &log).await) }
        })
    };
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let builder = limpet::proxy::local::server_builder(&limits);
    let conn = tokio::task::spawn_local(async move {
        let _ = builder
            .serve_connection_with_upgrades(TokioIo::new(server), svc)
            .await;
    });
    for segment in &segments {
        if client.write_all(segment).await.is_err() {
            break;
        }
        settle().await;
    }
    let _ = client.shutdown().await;
    settle().await;
    let mut output = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut output)).await;
    conn.abort();
    (log, output)
}

/// The service: proxy::check on what hyper parsed, then the whole body.
pub(super) async fn record(
    req: Request<Incoming>,
    limits: &Limits,
    log: &RefCell<Vec<Logged>>,
) -> Response<Empty<Bytes>> {
    let (parts, body) = req.into_parts();
    let head = Request::from_parts(parts, ());
    let uri = head.uri();
    let mut seen = Seen {
        method: head.method().as_str().to_owned(),
        target: (
            uri.scheme_str().map(str::to_owned),
            uri.authority().map(|a| a.as_str().as_bytes().to_vec()),
            uri.path_and_query()
                .map_or(b"".to_vec(), |pq| pq.as_str().as_bytes().to_vec()),
        ),
        version: head.version(),
        fields: fields_of(
            head.headers()
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
        ),
        authority: None,
        body: Body::Failed(None),
    };
    let checked = match limpet::proxy::check::request(&head, limits) {
        Ok(c) => c,
        Err(e) => {
            log.borrow_mut().push(Logged {
                seen,
                refused: Some(e.status().as_u16()),
            });
            return status(CHECKED);
        }
    };
    seen.authority = checked.authority.map(|a| a.as_bytes().to_vec());
    let mut data = Vec::new();
    let mut trailers = BTreeMap::new();
    let mut body = body;
    seen.body = loop {
        match body.frame().await {
            None => break Body::Complete { data, trailers },
            Some(Err(_)) => break Body::Failed(None),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers =
                            fields_of(t.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())));
                    }
                }
            },
        }
    };
    log.borrow_mut().push(Logged {
        seen,
        refused: None,
    });
    status(SERVED)
}

pub(super) fn status(code: u16) -> Response<Empty<Bytes>> {
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::from_u16(code).unwrap();
    res
}

/// The status hyper answered by itself, if it did: a response other than
/// the service's and 1xx.
pub(super) fn hyper_refusal(mut output: &[u8]) -> Option<u16> {
    let mut refused = None;
    while !output.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = res.parse(output) else {
            break;
        };
        let code = res.code.unwrap_or(0);
        let body: usize = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .unwrap_or(0);
        if !(100..200).contains(&code) && code != SERVED && code != CHECKED {
            refused = Some(code);
        }
        output = output.get(len + body..).unwrap_or_default();
    }
    refused
}
