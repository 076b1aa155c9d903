//! The one sentence that says why a directive is not carried over, by
//! what the directive does: logging, header rewriting, access control,
//! statistics, Lua, compression, caching, error pages, process management.

/// Why a directive limpet does not carry over is not carried over.
pub fn why_not(words: &[String]) -> &'static str {
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    let action = w(1);
    match w(0) {
        "log" | "log-format" | "log-tag" | "capture" | "log-send-hostname" | "error-log-format" => {
            "logging is limpet's own: log.access, log.format (text|json), log.file"
        }
        "option" if w(1).contains("log") => {
            "logging is limpet's own: log.access, log.format (text|json), log.file"
        }
        "option"
            if matches!(
                w(1),
                "http-server-close" | "httpclose" | "forceclose" | "http-pretend-keepalive"
            ) =>
        {
            "limpet keeps client connections and pooled server connections alive"
        }
        "http-request" | "http-response" | "http-after-response"
            if action.contains("header")
                || action.starts_with("replace")
                || action.starts_with("set-") =>
        {
            "header and request rewriting is not carried over: limpet forwards what the client sent (X-Forwarded-* aside)"
        }
        "http-request" | "tcp-request"
            if action.starts_with("track-sc") || action.contains("rate") =>
        {
            "rate limiting is not carried over"
        }
        "http-request" | "tcp-request" | "http-response"
            if matches!(
                action,
                "deny" | "reject" | "tarpit" | "auth" | "silent-drop" | "content" | "connection"
            ) =>
        {
            "access control is not carried over: put it in front of limpet or in the application"
        }
        "stats" | "monitor-uri" | "monitor" => {
            "the statistics page becomes limpet's admin endpoint (admin: /status, /metrics, /api/pools)"
        }
        "lua-load" | "lua-prepend-path" => "Lua is not carried over",
        "compression" | "filter" => "limpet does not compress or filter responses",
        "cache" | "cache-use" | "cache-store" => "limpet does not cache responses",
        "errorfile" | "errorloc" | "errorloc302" | "errorloc303" | "errorfiles" | "http-error" => {
            "limpet answers its own short 502/503/504 bodies"
        }
        "daemon" | "user" | "group" | "uid" | "gid" | "chroot" | "pidfile" | "master-worker" => {
            "process management is the service manager's (limpet's systemd unit)"
        }
        "nbthread" | "nbproc" | "cpu-map" => {
            "threads are `workers:` (auto = one per CPU); set it by hand if needed"
        }
        "timeout" => "this timeout has no limpet equivalent",
        "http-request"
        | "http-response"
        | "tcp-request"
        | "tcp-response"
        | "http-after-response" => "this rule is not carried over: limpet has no equivalent",
        w0 if w0.starts_with("ssl-") || w0.starts_with("tune.ssl") => {
            "limpet's TLS is rustls with its defaults (TLS 1.2 and 1.3, modern ciphers)"
        }
        w0 if w0.starts_with("tune.") => {
            "tuning is not carried over: limpet's limits are in `limits:`"
        }
        _ => "not carried over: limpet has no equivalent",
    }
}
