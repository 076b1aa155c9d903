//! A DNS server for the tests of name resolution and DNS discovery: it
//! answers from records the test sets and changes at run time (A, SRV with
//! its targets' A records in the additional section, as Kubernetes' CoreDNS
//! does), on one ephemeral loopback port over UDP and TCP (a truncated UDP
//! answer is retried over TCP). It can also answer NXDOMAIN to everything or
//! stay silent, and counts the queries it received so that a test can wait
//! until limpet asked again. hickory-proto parses and builds the messages.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// The UDP payload this server advertises in its EDNS answers (the DNS flag
/// day 2020 value); a larger answer goes out truncated, to be asked over TCP.
const UDP_PAYLOAD: u16 = 1232;

/// A DNS server on `127.0.0.1:<port>` (UDP and TCP), served by tasks of the
/// test's runtime until it is dropped.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

/// What the server does with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Answer,
    NxDomain,
    Silent,
}

#[derive(Default)]
struct Records {
    a: Vec<Ipv4Addr>,
    srv: Vec<SRV>,
}

struct Zone {
    names: HashMap<Name, Records>,
    mode: Mode,
    ttl: u32,
}

struct Shared {
    zone: Mutex<Zone>,
    queries: AtomicU64,
}

impl DnsServer {
    /// Binds UDP on `127.0.0.1:0` and TCP on the same port, and serves.
    pub async fn start() -> DnsServer {
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().unwrap();
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone {
                names: HashMap::new(),
                mode: Mode::Answer,
                ttl: 1,
            }),
            queries: AtomicU64::new(0),
        });
        let tasks = [
            tokio::spawn(serve_udp(udp, shared.clone())),
            tokio::spawn(serve_tcp(tcp, shared.clone())),
        ];
        DnsServer {
            addr,
            shared,
            tasks,
        }
    }

    /// The address to give a resolver (`nameservers: [ADDR]`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the A records of `name` (absolute or relative, any case). An
    /// empty list leaves the name existing without addresses: NODATA.
    pub fn set_a(&self, name: &str, addrs: &[Ipv4Addr]) {
        self.edit(|zone| zone.names.entry(normalize(name)).or_default().a = addrs.to_vec());
    }

    /// Sets the SRV records of `name`: `(priority, weight, port, target)`.
    /// The targets' addresses are their own A records (`set_a`).
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let srv = records
            .iter()
            .map(|&(priority, weight, port, target)| {
                SRV::new(priority, weight, port, normalize(target))
            })
            .collect();
        self.edit(|zone| zone.names.entry(normalize(name)).or_default().srv = srv);
    }

    /// Removes every record of `name`: it answers NXDOMAIN from now on.
    pub fn remove(&self, name: &str) {
        self.edit(|zone| {
            zone.names.remove(&normalize(name));
        });
    }

    /// The TTL of every record answered from now on (1 s at start; whole
    /// seconds, rounded down).
    pub fn set_ttl(&self, ttl: Duration) {
        let secs = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        self.edit(|zone| zone.ttl = secs);
    }

    /// Answers from the records (the mode at start).
    pub fn answer(&self) {
        self.edit(|zone| zone.mode = Mode::Answer);
    }

    /// Answers every query NXDOMAIN, whatever the records.
    pub fn nxdomain(&self) {
        self.edit(|zone| zone.mode = Mode::NxDomain);
    }

    /// Receives (and counts) queries but never answers them.
    pub fn silent(&self) {
        self.edit(|zone| zone.mode = Mode::Silent);
    }

    /// How many queries arrived so far, over UDP and TCP, in every mode.
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::SeqCst)
    }

    fn edit(&self, change: impl FnOnce(&mut Zone)) {
        change(&mut self.shared.zone.lock().unwrap());
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A name as the zone keys it: lowercase and absolute.
fn normalize(name: &str) -> Name {
    let mut name = Name::from_ascii(name)
        .unwrap_or_else(|e| panic!("not a DNS name: {name:?}: {e}"))
        .to_lowercase();
    name.set_fqdn(true);
    name
}

/// A UDP socket on an ephemeral loopback port and a TCP listener on the
/// same port (tried again on another port if TCP's is taken).
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0; 65_535];
    loop {
        // An error here is about one datagram (an ICMP error of a past
        // send): the next one is served as usual.
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(wire) = shared.reply(&buf[..len], true) {
            let _ = socket.send_to(&wire, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    // Owned by this task: aborting it closes every connection too.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if let Ok((stream, _)) = listener.accept().await {
            connections.spawn(serve_tcp_connection(stream, shared.clone()));
        }
    }
}

/// DNS over TCP: each message is preceded by its length on two bytes.
async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    loop {
        let len = stream.read_u16().await?;
        let mut buf = vec![0; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        if let Some(wire) = shared.reply(&buf, false) {
            let len = u16::try_from(wire.len()).map_err(io::Error::other)?;
            stream.write_u16(len).await?;
            stream.write_all(&wire).await?;
        }
    }
}

impl Shared {
    /// Counts a query and encodes its answer (none when silent or when the
    /// bytes are no DNS message); over UDP, truncated to what the client
    /// can receive.
    fn reply(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let request = Message::from_vec(query).ok()?;
        let response = self.zone.lock().unwrap().respond(&request)?;
        let wire = response.to_vec().ok()?;
        let limit = usize::from(request.max_payload().min(UDP_PAYLOAD));
        if udp && wire.len() > limit {
            return response.truncate().to_vec().ok();
        }
        Some(wire)
    }
}

impl Zone {
    fn respond(&self, request: &Message) -> Option<Message> {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata = Metadata::response_from_request(&request.metadata);
        response.metadata.authoritative = true;
        response.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_PAYLOAD);
            response.set_edns(edns);
        }
        let code = match self.mode {
            Mode::Silent => return None,
            Mode::NxDomain => ResponseCode::NXDomain,
            Mode::Answer => self.answer(request, &mut response),
        };
        response.metadata.response_code = code;
        Some(response)
    }

    /// Fills the answer and additional sections; returns the response code.
    fn answer(&self, request: &Message, response: &mut Message) -> ResponseCode {
        if request.metadata.op_code != OpCode::Query {
            return ResponseCode::NotImp;
        }
        let [query] = request.queries.as_slice() else {
            return ResponseCode::FormErr;
        };
        let mut key = query.name().to_lowercase();
        key.set_fqdn(true);
        let Some(records) = self.names.get(&key) else {
            return ResponseCode::NXDomain;
        };
        // Owner names as asked: a resolver may randomize their case.
        let owner = query.name();
        match query.query_type() {
            RecordType::A => {
                for ip in &records.a {
                    response.add_answer(self.record(owner, RData::A(A(*ip))));
                }
            }
            RecordType::SRV => {
                let mut targets: Vec<&Name> = Vec::new();
                for srv in &records.srv {
                    response.add_answer(self.record(owner, RData::SRV(srv.clone())));
                    if !targets.contains(&&srv.target) {
                        targets.push(&srv.target);
                    }
                }
                for target in targets {
                    let addrs = self.names.get(target).map(|r| r.a.as_slice());
                    for ip in addrs.unwrap_or_default() {
                        response.add_additional(self.record(target, RData::A(A(*ip))));
                    }
                }
            }
            // The name exists without records of this type: NODATA.
            _ => {}
        }
        ResponseCode::NoError
    }

    fn record(&self, owner: &Name, data: RData) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, data)
    }
}

/// The server as hickory-resolver sees it.
mod tests {
    use super::*;
    use crate::harness::eventually;
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::NetError;
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::{Resolver, TokioResolver};

    /// A resolver that asks `dns` only, over `connections` to its port:
    /// no system configuration, no hosts file, no search domains, no cache.
    fn resolver_with(
        dns: &DnsServer,
        connections: Vec<ConnectionConfig>,
        tune: impl FnOnce(&mut ResolverOpts),
    ) -> TokioResolver {
        let connections = connections
            .into_iter()
            .map(|mut c| {
                c.port = dns.addr().port();
                c
            })
            .collect();
        let server = NameServerConfig::new(dns.addr().ip(), true, connections);
        let config = ResolverConfig::from_name_servers(vec![server]);
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        // Capacity 0 turns hickory's cache (moka) off: nothing is stored.
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(1);
        opts.attempts = 1;
        tune(&mut opts);
        Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .unwrap()
    }

    fn resolver(dns: &DnsServer) -> TokioResolver {
        resolver_with(dns, vec![ConnectionConfig::udp()], |_| {})
    }

    async fn ipv4s(resolver: &TokioResolver, name: &str) -> Result<Vec<Ipv4Addr>, NetError> {
        let lookup = resolver.ipv4_lookup(name).await?;
        let mut ips: Vec<Ipv4Addr> = lookup
            .answers()
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some(ip),
                _ => None,
            })
            .collect();
        ips.sort();
        Ok(ips)
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, last)
    }

    #[tokio::test]
    async fn an_a_record_is_answered_whatever_the_case_and_final_dot_of_its_name() {
        let dns = DnsServer::start().await;
        dns.set_a("Node1.Test.", &[ip(12), ip(11)]);
        let r = resolver(&dns);
        assert_eq!(ipv4s(&r, "node1.test").await.unwrap(), [ip(11), ip(12)]);
        assert_eq!(ipv4s(&r, "NODE1.test.").await.unwrap(), [ip(11), ip(12)]);
        let ttls = |lookup: hickory_resolver::lookup::Lookup| -> Vec<u32> {
            lookup.answers().iter().map(|r| r.ttl).collect()
        };
        assert_eq!(ttls(r.ipv4_lookup("node1.test.").await.unwrap()), [1, 1]);
        dns.set_ttl(Duration::from_secs(30));
        assert_eq!(ttls(r.ipv4_lookup("node1.test.").await.unwrap()), [30, 30]);
    }

    #[tokio::test]
    async fn an_srv_answer_carries_its_targets_addresses_in_the_additional_section() {
        let dns = DnsServer::start().await;
        dns.set_srv(
            "_http._tcp.app.test",
            &[(10, 5, 8080, "node1.test"), (20, 0, 8081, "Node2.test.")],
        );
        dns.set_a("node1.test", &[ip(11)]);
        dns.set_a("node2.test", &[ip(12), ip(13)]);
        let lookup = resolver(&dns)
            .srv_lookup("_http._tcp.app.test.")
            .await
            .unwrap();

        let mut srv: Vec<(u16, u16, u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_string())),
                _ => None,
            })
            .collect();
        srv.sort();
        assert_eq!(
            srv,
            [
                (10, 5, 8080, "node1.test.".to_owned()),
                (20, 0, 8081, "node2.test.".to_owned()),
            ]
        );
        let mut additional: Vec<(String, Ipv4Addr)> = lookup
            .additionals()
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(ip)) => Some((r.name.to_string(), ip)),
                _ => None,
            })
            .collect();
        additional.sort();
        assert_eq!(
            additional,
            [
                ("node1.test.".to_owned(), ip(11)),
                ("node2.test.".to_owned(), ip(12)),
                ("node2.test.".to_owned(), ip(13)),
            ]
        );
    }

    #[tokio::test]
    async fn without_a_cache_every_lookup_asks_and_sees_the_latest_records() {
        let dns = DnsServer::start().await;
        dns.set_a("node1.test", &[ip(11)]);
        let r = resolver(&dns);
        assert_eq!(ipv4s(&r, "node1.test.").await.unwrap(), [ip(11)]);
        dns.set_a("node1.test", &[ip(21), ip(22)]);
        assert_eq!(ipv4s(&r, "node1.test.").await.unwrap(), [ip(21), ip(22)]);
        assert_eq!(dns.queries(), 2);
    }

    #[tokio::test]
    async fn a_cached_answer_is_asked_again_once_its_ttl_expired() {
        let dns = DnsServer::start().await;
        dns.set_a("node1.test", &[ip(11)]);
        // hickory's default cache, which honours the 1 s TTL.
        let r = resolver_with(&dns, vec![ConnectionConfig::udp()], |opts| {
            opts.cache_size = ResolverOpts::default().cache_size;
        });
        let first = r.ipv4_lookup("node1.test.").await.unwrap();
        assert!(first.answers().iter().all(|r| r.ttl == 1), "{first:?}");
        dns.set_a("node1.test", &[ip(21)]);
        assert_eq!(ipv4s(&r, "node1.test.").await.unwrap(), [ip(11)]);
        assert_eq!(dns.queries(), 1, "the second lookup came from the cache");
        let changed = eventually(Duration::from_secs(3), || async {
            ipv4s(&r, "node1.test.").await.unwrap() == [ip(21)]
        })
        .await;
        assert!(changed);
        assert_eq!(dns.queries(), 2);
    }

    #[tokio::test]
    async fn an_unknown_name_is_nxdomain_and_a_known_one_without_the_type_is_nodata() {
        let dns = DnsServer::start().await;
        dns.set_a("node1.test", &[ip(11)]);
        dns.set_a("empty.test", &[]);
        let r = resolver(&dns);

        let unknown = r.ipv4_lookup("nobody.test.").await.unwrap_err();
        assert!(unknown.is_nx_domain(), "{unknown:?}");
        for nodata in [
            r.srv_lookup("node1.test.").await.unwrap_err(),
            r.ipv4_lookup("empty.test.").await.unwrap_err(),
        ] {
            assert!(nodata.is_no_records_found(), "{nodata:?}");
            assert!(!nodata.is_nx_domain(), "{nodata:?}");
        }

        dns.remove("NODE1.test.");
        let removed = r.ipv4_lookup("node1.test.").await.unwrap_err();
        assert!(removed.is_nx_domain(), "{removed:?}");
    }

    #[tokio::test]
    async fn nxdomain_mode_denies_names_that_exist_until_answer_mode_returns() {
        let dns = DnsServer::start().await;
        dns.set_a("node1.test", &[ip(11)]);
        let r = resolver(&dns);
        dns.nxdomain();
        let denied = r.ipv4_lookup("node1.test.").await.unwrap_err();
        assert!(denied.is_nx_domain(), "{denied:?}");
        dns.answer();
        assert_eq!(ipv4s(&r, "node1.test.").await.unwrap(), [ip(11)]);
    }

    #[tokio::test]
    async fn silent_mode_counts_the_query_and_lets_the_resolver_time_out() {
        let dns = DnsServer::start().await;
        dns.set_a("node1.test", &[ip(11)]);
        let r = resolver_with(&dns, vec![ConnectionConfig::udp()], |opts| {
            opts.timeout = Duration::from_millis(300);
        });
        dns.silent();
        let started = std::time::Instant::now();
        let silence = r.ipv4_lookup("node1.test.").await.unwrap_err();
        assert!(matches!(silence, NetError::Timeout), "{silence:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(dns.queries() >= 1);

        dns.answer();
        assert_eq!(ipv4s(&r, "node1.test.").await.unwrap(), [ip(11)]);
    }

    #[tokio::test]
    async fn an_answer_too_large_for_udp_is_truncated_and_asked_again_over_tcp() {
        let dns = DnsServer::start().await;
        let targets: Vec<String> = (0..80).map(|i| format!("node{i}.test")).collect();
        let srv: Vec<(u16, u16, u16, &str)> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (10, 1, 8000 + i as u16, t.as_str()))
            .collect();
        dns.set_srv("_http._tcp.big.test", &srv);
        let both = vec![ConnectionConfig::udp(), ConnectionConfig::tcp()];
        let lookup = resolver_with(&dns, both, |_| {})
            .srv_lookup("_http._tcp.big.test.")
            .await
            .unwrap();
        assert_eq!(lookup.answers().len(), 80);
        assert_eq!(dns.queries(), 2, "once over UDP (truncated), once over TCP");
    }
}
