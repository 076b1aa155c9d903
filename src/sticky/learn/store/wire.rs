//! What limpet writes to Redis and says on its channel, in one place: the
//! names of a pool's keys and the announcements every instance's subscriber
//! reads (see the store's module documentation for what each is for).
//!
//! Announcements are one line of text: `<instance> <key>` (the server ended
//! the session), `<instance> <key> <server>` (a session and its server) and
//! `<instance> @` (a heartbeat). `<instance>` is 16 hex digits, random per
//! store; `<key>` is the 16-hex-digit table key.

/// The names of a pool's keys.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `limpet:<pool>:`
    pub prefix: String,
    /// `limpet:<pool>`: the announcements.
    pub channel: String,
    /// Present while Redis holds this pool's sessions; gone after a restart
    /// without persistence or a flush.
    pub marker: String,
}

impl Keys {
    pub fn new(pool: &str) -> Keys {
        Keys {
            prefix: format!("limpet:{pool}:"),
            channel: format!("limpet:{pool}"),
            marker: format!("limpet:{pool}:@present"),
        }
    }

    /// The Redis key of session `key`.
    pub fn key(&self, key: u64) -> String {
        format!("{}{key:016x}", self.prefix)
    }
}

/// A failover's compare-and-set: `KEYS[1]` the session's key, `ARGV[1]`
/// the server it was on, `ARGV[2]` the server it moves to, `ARGV[3]` the
/// TTL in ms, `ARGV[4]` the channel, `ARGV[5]` the announcement. Written
/// (and announced) only if Redis still names the old server, or nothing,
/// or the new one already; the answer is the server Redis names after.
pub const MOVE_SCRIPT: &str = "local now = redis.call('GET', KEYS[1]) \
if now == false or now == ARGV[1] or now == ARGV[2] then \
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
if now ~= ARGV[2] then redis.call('PUBLISH', ARGV[4], ARGV[5]) end \
return ARGV[2] end \
return now";

/// `session` is on `server`.
pub fn announce_set(instance: &str, key: u64, server: &str) -> String {
    format!("{instance} {key:016x} {server}")
}

/// The server ended `session`.
pub fn announce_end(instance: &str, key: u64) -> String {
    format!("{instance} {key:016x}")
}

/// Proof that the channel is alive.
pub fn heartbeat(instance: &str) -> String {
    format!("{instance} @")
}

/// Redis's answers to `GET`-like commands, as text: a value that is not
/// (not UTF-8, another type) reads as none, so one foreign value in Redis
/// fails no batch, and so never takes the store down.
pub fn texts(answers: Vec<redis::Value>) -> Vec<Option<String>> {
    answers
        .into_iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => String::from_utf8(b).ok(),
            redis::Value::SimpleString(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// An announcement as heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    Set {
        from: &'a str,
        key: u64,
        server: &'a str,
    },
    End {
        from: &'a str,
        key: u64,
    },
}

impl<'a> Heard<'a> {
    /// The instance that said it.
    pub fn from(&self) -> &'a str {
        match self {
            Heard::Set { from, .. } | Heard::End { from, .. } => from,
        }
    }
}

/// Reads an announcement; `None` for a heartbeat or anything that is not
/// one (what comes from Redis can be anything).
pub fn hear(payload: &[u8]) -> Option<Heard<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(3, ' ');
    let (from, key) = (parts.next()?, parts.next()?);
    let key = u64::from_str_radix(key, 16).ok()?;
    Some(match parts.next() {
        Some(server) if !server.is_empty() => Heard::Set { from, key, server },
        _ => Heard::End { from, key },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_are_the_table_key_in_hex_under_the_pool() {
        let n = Keys::new("app");
        assert_eq!(n.key(0xab), "limpet:app:00000000000000ab");
        assert_eq!(n.channel, "limpet:app");
        assert!(!n.marker.ends_with(|c: char| c.is_ascii_hexdigit()));
    }

    #[test]
    fn what_is_announced_is_heard_as_said() {
        let set = announce_set("i1", 0xab, "node1");
        assert_eq!(
            hear(set.as_bytes()),
            Some(Heard::Set {
                from: "i1",
                key: 0xab,
                server: "node1"
            })
        );
        let end = announce_end("i1", 7);
        assert_eq!(
            hear(end.as_bytes()),
            Some(Heard::End { from: "i1", key: 7 })
        );
        assert_eq!(hear(heartbeat("i1").as_bytes()), None);
        assert_eq!(hear(b"i1"), None);
        assert_eq!(hear(b"i1 zz node1"), None);
        assert_eq!(hear(b"\xff\xfe 01 node1"), None);
    }

    #[test]
    fn a_value_that_is_not_text_reads_as_none() {
        use redis::Value;
        assert_eq!(
            texts(vec![
                Value::BulkString(b"node1".to_vec()),
                Value::Nil,
                Value::BulkString(vec![0xff, 0xfe]),
                Value::Int(3),
                Value::SimpleString("node2".into()),
            ]),
            [Some("node1".into()), None, None, None, Some("node2".into())]
        );
    }

    proptest! {
        #[test]
        fn anything_on_the_channel_is_read_without_a_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = hear(&payload);
        }

        #[test]
        fn every_set_round_trips(key in any::<u64>(), server in "[a-z0-9_.-]{1,20}") {
            let said = announce_set("0123456789abcdef", key, &server);
            prop_assert_eq!(hear(said.as_bytes()), Some(Heard::Set { from: "0123456789abcdef", key, server: &server }));
        }
    }
}
